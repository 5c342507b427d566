"""The SAM application groveflow runs: template.yaml, its state machines and handlers.

One copy lives at the repository's top level. A wheel carries the same files, copied at
build time into ``groveflow/_application/`` (see ``setup.py``), so an installed groveflow
runs its local engine from any directory and ``groveflow init DIR`` writes a deployable
application without the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from groveflow.errors import GroveflowError

__all__ = ["APPLICATION_FILES", "ApplicationNotWritable", "application_root", "write_application"]

APPLICATION_FILES = (
    "template.yaml",
    "samconfig.toml",
    "deploy.mk",
    "statemachine",
    "functions",
    "layers",
    "events",
    "docs",
)
"""What an application directory holds (besides ``src/groveflow``, the layer's source)."""

_WRITTEN_AS = {"deploy.mk": "Makefile"}
"""Files an application holds under another name: the repository's Makefile includes
deploy.mk (its build and deploy targets); an application has them as its own Makefile."""


class ApplicationNotWritable(GroveflowError):
    """``groveflow init``'s directory cannot take the application: a file, no parent, files of
    the application already there (nothing is overwritten), or the system refused a write."""


_PACKAGED = Path(__file__).resolve().parent / "_application"
_CHECKOUT = Path(__file__).resolve().parents[2]


def _is_application(directory: Path) -> bool:
    return (directory / "template.yaml").is_file() and (directory / "statemachine").is_dir()


def application_root(start: Path | None = None) -> Path:
    """The application to run: ``start`` (default: the working directory) or a parent of it
    that holds template.yaml and statemachine/, else the one groveflow was installed with.

    Raises
    ------
    FileNotFoundError
        If there is none at all (a broken installation).
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if _is_application(directory):
            return directory
    for directory in (_PACKAGED, _CHECKOUT):
        if _is_application(directory):
            return directory
    raise FileNotFoundError(
        f"no template.yaml with a statemachine/ folder in {here} or above, and none installed "
        f"with groveflow ({_PACKAGED}): reinstall groveflow"
    )


def write_application(directory: Path) -> Path:
    """Write the deployable SAM application (and the layer's groveflow source) to ``directory``.

    ``directory`` may exist (empty, or without any of the files); its parent must.

    Returns
    -------
    Path
        ``directory``, resolved.

    Raises
    ------
    ApplicationNotWritable
        If ``directory`` is a file, its parent does not exist, it already holds any of the
        files (nothing is overwritten), or it cannot be written.
    """
    source = application_root(_PACKAGED if _is_application(_PACKAGED) else _CHECKOUT)
    target = directory.expanduser().resolve()
    _check_target(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_application", ".aws-sam")
    try:
        target.mkdir(exist_ok=True)
        for name in APPLICATION_FILES:
            path, written = source / name, target / _WRITTEN_AS.get(name, name)
            if path.is_dir():
                shutil.copytree(path, written, ignore=ignore)
            elif path.is_file():
                shutil.copy2(path, written)
        package = Path(__file__).resolve().parent
        shutil.copytree(package, target / "src" / "groveflow", ignore=ignore)
    except OSError as error:
        raise ApplicationNotWritable(
            f"cannot write the application to {target}: {error.strerror or error} "
            f"({error.filename or target})"
        ) from None
    return target


def _check_target(target: Path) -> None:
    """Refuse, by name, a directory the application cannot be written to."""
    if target.exists() and not target.is_dir():
        raise ApplicationNotWritable(f"{target} is a file: name a new or empty directory")
    if target.parent.exists() and not target.parent.is_dir():
        raise ApplicationNotWritable(
            f"{target.parent} is a file: name a directory in one that exists"
        )
    if not target.parent.exists():
        raise ApplicationNotWritable(
            f"{target.parent} does not exist: create it first (mkdir -p {target.parent}) "
            "or name a directory in one that exists"
        )
    written = [_WRITTEN_AS.get(name, name) for name in (*APPLICATION_FILES, "src")]
    clashes = [name for name in written if (target / name).exists()]
    if clashes:
        raise ApplicationNotWritable(
            f"{target} already holds {', '.join(clashes)}: name a new or empty directory"
        )

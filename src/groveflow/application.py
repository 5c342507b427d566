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

__all__ = ["APPLICATION_FILES", "application_root", "write_application"]

APPLICATION_FILES = (
    "template.yaml",
    "samconfig.toml",
    "statemachine",
    "functions",
    "layers",
    "events",
    "docs",
)
"""What an application directory holds (besides ``src/groveflow``, the layer's source)."""

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

    Returns
    -------
    Path
        ``directory``, resolved.

    Raises
    ------
    GroveflowError
        If ``directory`` already holds any of the files: nothing is overwritten.
    """
    source = application_root(_PACKAGED if _is_application(_PACKAGED) else _CHECKOUT)
    target = directory.expanduser().resolve()
    clashes = [n for n in (*APPLICATION_FILES, "src") if (target / n).exists()]
    if clashes:
        raise GroveflowError(
            f"{target} already holds {', '.join(clashes)}: choose an empty or new directory"
        )
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_application", ".aws-sam")
    for name in APPLICATION_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, target / name)
    package = Path(__file__).resolve().parent
    shutil.copytree(package, target / "src" / "groveflow", ignore=ignore)
    return target

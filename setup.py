"""Build hook: the wheel carries the SAM application from the repository's top level.

template.yaml, statemachine/, functions/, layers/, events/, docs/, samconfig.toml and deploy.mk
(``groveflow.application.APPLICATION_FILES``) are copied into ``groveflow/_application/`` of the
built package, from the one copy at the top level (nothing is duplicated in the repository). The
sdist carries them too, so a wheel built from it (``python -m build``) has them as well.
"""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from groveflow.application import APPLICATION_FILES  # noqa: E402  (the one list of them)

SKIPPED = {"__pycache__", ".aws-sam"}


def application_sources() -> list[Path]:
    """Every application file under ROOT (not bytecode nor a build); a missing one is
    refused: a wheel without them could not run its local engine nor ``groveflow init``."""
    missing = [name for name in APPLICATION_FILES if not (ROOT / name).exists()]
    if missing:
        raise SystemExit(f"groveflow: the application files {missing} are not in {ROOT}")
    files: list[Path] = []
    for name in APPLICATION_FILES:
        path = ROOT / name
        for candidate in sorted(path.rglob("*")) if path.is_dir() else [path]:
            relative = candidate.relative_to(ROOT)
            if (
                candidate.is_file()
                and candidate.suffix != ".pyc"
                and not SKIPPED & set(relative.parts)
            ):
                files.append(candidate)
    return files


class BuildWithApplication(build_py):
    """``build_py``, then the application files into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "groveflow" / "_application"
        if target.exists():
            shutil.rmtree(target)
        for source in application_sources():
            copied = target / source.relative_to(ROOT)
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copied)


class SdistWithApplication(sdist):
    """``sdist``, with the application files beside the package's."""

    def make_distribution(self) -> None:
        self.filelist.extend(str(p.relative_to(ROOT)) for p in application_sources())
        super().make_distribution()


setup(cmdclass={"build_py": BuildWithApplication, "sdist": SdistWithApplication})

"""Build hook: the wheel carries the SAM application from the repository's top level.

template.yaml, statemachine/, functions/, layers/, events/, docs/ and samconfig.toml are
copied into ``groveflow/_application/`` of the built package, from the one copy at the top
level (nothing is duplicated in the repository). See ``groveflow.application``.
"""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from groveflow.application import APPLICATION_FILES  # noqa: E402  (the one list of them)


class BuildWithApplication(build_py):
    """``build_py``, then the application files into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "groveflow" / "_application"
        if target.exists():
            shutil.rmtree(target)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".aws-sam")
        for name in APPLICATION_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=ignore)
            elif source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithApplication})

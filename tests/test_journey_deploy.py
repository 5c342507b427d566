"""A user's journey from a wheel to a built application, outside the repository: groveflow's
wheel built as a release is (``python -m build``: the sdist, then the wheel from it) installed in
a fresh venv, ``groveflow init app``, then docs/deploy.md's offline steps in that directory with
nothing but its own files (the SAM CLI installed by its Makefile, ``sam validate --lint``,
``sam build``).

Slow (pip installs aws-sam-cli into the application's .venv-sam, sam build assembles both
layers): it runs with GROVEFLOW_BUILD_TESTS=1, which ``make test`` (CI) sets.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT
from groveflow.local.template import read_template
from test_deploy_build import LAMBDA_UNZIPPED_LIMIT_BYTES, MB, function_sizes, python312
from test_package import checkout_copy, install_wheel

pytestmark = pytest.mark.skipif(
    os.environ.get("GROVEFLOW_BUILD_TESTS") != "1",
    reason="slow (installs the SAM CLI, builds the layers): GROVEFLOW_BUILD_TESTS=1 runs it",
)


def offline_steps(deploy_doc: str) -> list[str]:
    """The commands of the first code block of deploy.md's "1. Install the SAM CLI and build"."""
    section = deploy_doc.split("\n## 1. ", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return [command for command in commands if command]


def user_environment() -> dict[str, str]:
    """This environment without what would help the application along: the PYTHON312 the
    repository's Makefile exports, and the make variables of a `make test` running this."""
    hidden = {"PYTHON312", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VIRTUAL_ENV"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


def run(command: list[str], cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def release_wheel(work: Path) -> Path:
    """groveflow's wheel as ``python -m build`` makes it: from the sdist, so the application
    files reach the wheel only if the sdist carries them."""
    if importlib.util.find_spec("build.__main__") is None:  # (not the in-tree build/ folder)
        pytest.skip("needs the test extra's build (pypa/build): pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(checkout_copy(work))],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return next((work / "dist").glob("groveflow-*.whl"))


@pytest.fixture(scope="module")
def application(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``groveflow init app`` by groveflow installed from its wheel, in a directory outside
    the repository; its SAM CLI venv and build (about 700 MB) are removed afterwards."""
    work = tmp_path_factory.mktemp("journey")
    assert not work.resolve().is_relative_to(ROOT)
    installed = install_wheel(release_wheel(work), work / "venv")
    done = run([str(installed / "groveflow"), "init", "app"], cwd=work, timeout=120)
    assert done.returncode == 0, done.stderr
    app = work / "app"
    yield app
    for heavy in (".venv-sam", ".aws-sam"):
        shutil.rmtree(app / heavy, ignore_errors=True)


def test_without_python312_the_build_names_it_and_its_fix_in_one_line(
    application: Path,
) -> None:
    # WHEN the application is built where no python3.12 is found
    done = run(["make", "build", "PYTHON312="], cwd=application, timeout=60)
    # THEN it stops before anything is installed, with one line saying what to install
    assert done.returncode != 0
    first, *_ = done.stderr.splitlines()
    assert first.startswith("python3.12 (the Python of the Lambda runtime"), done.stderr
    assert "pyenv install 3.12" in first
    assert "PYTHON312=/path/to/python3.12" in first


def test_an_initialised_application_builds_by_its_deploy_doc_from_its_own_files(
    application: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the application's own deploy doc, and a python3.12 that its Makefile finds itself
    if python312() is None:
        pytest.skip("no python3.12 here (PATH or pyenv) to compile the layers with")
    steps = offline_steps((application / "docs" / "deploy.md").read_text())
    assert steps == ["make sam-venv", "make validate", "make build"]
    # WHEN each offline step runs there as written
    for step in steps:
        started = time.monotonic()
        done = run(shlex.split(step), cwd=application)
        with capsys.disabled():
            print(f"\n{step}: {time.monotonic() - started:.0f} s", end="")
        # THEN it succeeds
        assert done.returncode == 0, f"{step}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    # AND the SAM CLI was the application's own, and every function was built with its layer
    assert (application / ".venv-sam" / "bin" / "sam").is_file()
    build = application / ".aws-sam" / "build"
    sizes = function_sizes(read_template(build / "template.yaml"), build)
    declared = {
        name
        for name, resource in read_template(application / "template.yaml")["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(sizes) == declared
    largest = max(size["total"] for size in sizes.values())
    with capsys.disabled():
        print(f"\nlargest function + layers, unzipped: {largest / MB:.1f} MiB", end="")
    assert largest < LAMBDA_UNZIPPED_LIMIT_BYTES
    # AND the layer packs the application's groveflow, compiled for the runtime's Python
    layer = build / "DependenciesLayer" / "python" / "groveflow"
    packed = (layer / "application.py").read_bytes()
    assert packed == (application / "src" / "groveflow" / "application.py").read_bytes()
    assert list((layer / "__pycache__").glob("application.cpython-312.pyc"))

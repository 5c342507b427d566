"""groveflow as a package: a wheel installed in a fresh virtual environment runs anywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

# What a build never reads: the venvs, the SAM build, node's packages, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".aws-sam",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    ".groveflow",
    "__pycache__",
    ".*_cache",
    "*-report",
)


def checkout_copy(work: Path) -> Path:
    """A copy of this checkout's sources in ``work``: setuptools builds in the source tree
    (``build/``, ``*.egg-info``), so a wheel built from the checkout itself leaves those in it."""
    copy = work / "source"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCE)
    return copy


def build_wheel(work: Path) -> Path:
    """The groveflow wheel of this checkout, built in ``work`` as ``pip install .`` builds it
    (an isolated build, which runs setup.py's copy of the application files), from a copy of
    the sources so that the checkout is left as it was."""
    source = checkout_copy(work)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(work)],
        check=True,
        timeout=600,
    )
    return next(work.glob("groveflow-*.whl"))


def install_wheel(wheel: Path, venv: Path) -> Path:
    """A fresh venv at ``venv`` with ``wheel`` installed (not editable); its bin directory.

    Its dependencies are not downloaded again: a ``.pth`` file lets the venv see this
    environment's site-packages, whose ``.pth`` files (the editable install's finder among
    them) are not processed, so ``import groveflow`` finds the installed wheel.
    """
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(pip, check=True, timeout=300)
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "zz-groveflow-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with this checkout's groveflow wheel installed; its bin directory."""
    work = tmp_path_factory.mktemp("package")
    return install_wheel(build_wheel(work), work / "venv")


def test_the_wheel_carries_the_application_from_the_top_level_files(installed: Path) -> None:
    wheel = next(installed.parent.parent.glob("groveflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("template.yaml", "statemachine/train.asl.json", "functions/plan/app.py"):
        packaged = f"groveflow/_application/{name}"
        assert packaged in names
        assert zipfile.ZipFile(wheel).read(packaged) == (ROOT / name).read_bytes()


def test_an_installed_groveflow_trains_and_predicts_from_an_empty_directory(
    installed: Path, tmp_path: Path
) -> None:
    # GIVEN an empty directory with a CSV and an input file, far from the repository
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(
        tmp_path / "wine.csv", np.column_stack([X, y]), delimiter=",", header=header, comments=""
    )
    (tmp_path / "input.json").write_text(
        json.dumps({"data": {"uri": "wine.csv", "target": "label"}, "n_trees": 6})
    )
    # WHEN the installed command trains there
    done = subprocess.run(
        [str(installed / "groveflow"), "train", "input.json", "--run-id", "wine", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN it trains, and the installed package (not this checkout) loads the forest
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["accuracy"] > 0.8
    script = (
        "import groveflow, numpy as np; "
        "f = groveflow.load_forest('.groveflow/s3/groveflow-local/runs/wine/model'); "
        "print(groveflow.__file__); print(f.predict(np.loadtxt('wine.csv', delimiter=',', "
        "skiprows=1)[:5, :-1]).tolist())"
    )
    loaded = subprocess.run(
        [str(installed / "python"), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    where, predicted = loaded.stdout.splitlines()
    assert where.startswith(str(installed.parent)), where
    assert json.loads(predicted) == [0.0] * 5


def test_init_writes_the_deployable_application_and_refuses_to_overwrite(
    installed: Path, tmp_path: Path
) -> None:
    command = [str(installed / "groveflow"), "init", "app"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    app = tmp_path / "app"
    for name in (
        "template.yaml",
        "samconfig.toml",
        "statemachine/train.asl.json",
        "layers/Makefile",
        "layers/python312.mk",
        "docs/deploy.md",
    ):
        assert (app / name).read_bytes() == (ROOT / name).read_bytes()
    # the repository's build and deploy targets (deploy.mk) are the application's Makefile
    assert (app / "Makefile").read_bytes() == (ROOT / "deploy.mk").read_bytes()
    assert (app / "src" / "groveflow" / "training" / "_build.py").is_file()  # what the layer packs
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert again.returncode == 2
    assert "already holds template.yaml" in again.stderr


@pytest.mark.parametrize(
    ("directory", "message"),
    [
        ("a-file", "a-file is a file: name a new or empty directory"),
        ("a-file/app", "a-file is a file: name a directory in one that exists"),
        ("missing/app", "missing does not exist: create it first (mkdir -p "),
    ],
)
def test_init_refuses_a_file_or_a_missing_parent_by_name(
    tmp_path: Path, directory: str, message: str
) -> None:
    # GIVEN a file where the application or its parent would go, or no parent at all
    (tmp_path / "a-file").write_text("not a directory")
    # WHEN groveflow init is pointed there
    done = subprocess.run(
        [sys.executable, "-m", "groveflow.cli", "init", directory],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN one line names the problem and nothing is written
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("groveflow: ApplicationNotWritable: "), done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]

"""Checks of the `sam build` output in .aws-sam/build: sizes against Lambda's limit, the layer's
contents, and the handlers importing from the built layer on the runtime's Python.

They run when the build output exists, or when GROVEFLOW_BUILD_TESTS=1 (which builds it with
`make build` first: aws-sam-cli in .venv-sam and about 60 MB of wheels). `make build-check` does both.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from groveflow.local.template import read_template

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
BUILT_TEMPLATE = BUILD / "template.yaml"
# Lambda's limit on a function's deployment package plus its layers, unzipped: 250 MB.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
# Keep a margin for the next dependency bump: fail at 90% of the limit.
BUDGET_BYTES = int(LAMBDA_UNZIPPED_LIMIT_BYTES * 0.9)
MB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    not BUILT_TEMPLATE.exists() and os.environ.get("GROVEFLOW_BUILD_TESTS") != "1",
    reason="no .aws-sam/build: `make build-check` (or GROVEFLOW_BUILD_TESTS=1) builds and checks it",
)


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    """The built template; builds it first when asked to and it is missing."""
    if not BUILT_TEMPLATE.exists():
        subprocess.run(["make", "build"], cwd=ROOT, check=True, timeout=1200)
    return read_template(BUILT_TEMPLATE)


def tree_bytes(path: Path) -> int:
    """Unzipped size of a directory: the sum of its files' sizes (links not followed)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def function_sizes(template: dict[str, Any], build: Path = BUILD) -> dict[str, dict[str, int]]:
    """Per function: bytes of its own code, of its layers, and the total Lambda counts
    (``build``: the directory of the built template)."""
    resources = template["Resources"]
    sizes = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        layers = props.get("Layers") or template.get("Globals", {}).get("Function", {}).get(
            "Layers", []
        )
        layer_dirs = [
            build / resources[layer["Ref"]]["Properties"]["ContentUri"] for layer in layers
        ]
        code = tree_bytes(build / props["CodeUri"])
        layer_bytes = sum(tree_bytes(d) for d in layer_dirs)
        sizes[logical_id] = {"code": code, "layers": layer_bytes, "total": code + layer_bytes}
    return sizes


def layer_dir(template: dict[str, Any], layer: str = "DependenciesLayer") -> Path:
    return BUILD / template["Resources"][layer]["Properties"]["ContentUri"] / "python"


def function_layer(resource: dict[str, Any]) -> str:
    """The logical id of the one layer a built function uses."""
    (layer,) = resource["Properties"]["Layers"]
    return str(layer["Ref"])


# Every layer's AWS SDK: botocore imported from the layer (argv[2]) takes the parameters
# groveflow sends, S3's conditional write (IfNoneMatch, botocore >= 1.35.2) among them. The
# Stubber checks them against the layer's S3 model; nothing is sent.
SDK_SMOKE = (
    "import os, botocore\n"
    "from botocore.stub import Stubber\n"
    "from groveflow import storage\n"
    "assert botocore.__file__.startswith(sys.argv[2]), botocore.__file__\n"
    "os.environ.update(AWS_DEFAULT_REGION='us-east-1', AWS_ACCESS_KEY_ID='k', "
    "AWS_SECRET_ACCESS_KEY='s')\n"
    "with Stubber(storage._s3()) as stub:\n"
    "    sent = {'Bucket': 'b', 'Key': 'k', 'Body': b'x', 'Metadata': {}, 'IfNoneMatch': '*'}\n"
    "    stub.add_response('put_object', {}, sent)\n"
    "    assert storage.create_bytes('b', 'k', b'x')\n"
)

# What each layer must be able to do on the runtime's Python, once a handler is imported.
SMOKE = {
    "DependenciesLayer": (
        "from sklearn.datasets import load_digits\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "X, y = load_digits(return_X_y=True)\n"
        "assert RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y).score(X, y) > 0.9\n"
    ),
    "IngestLayer": (
        "import pathlib, tempfile, pyarrow as pa, pyarrow.parquet as pq\n"
        "from groveflow.datasets import read_columns\n"
        "from groveflow.ingest import ingest_file\n"
        "from groveflow.request import DataSpec\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "pq.write_table(pa.table({'a': [1.0, None], 'b': ['x', None]}), d / 't.parquet')\n"
        "(d / 't.csv').write_text('a,b\\n1.5,x\\nNA,\\n')\n"
        "for name in ('t.parquet', 't.csv'):\n"
        "    _, parts, _ = ingest_file(str(d / name), DataSpec(uri=name), d)\n"
        "    assert [str(v) for v in read_columns(parts[0], name)['b']] == ['x', '']\n"
    ),
}


def python312() -> str | None:
    """The runtime's Python here: $PYTHON312, python3.12 on PATH, or pyenv's 3.12."""
    home = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [os.environ.get("PYTHON312", ""), shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(f"{home}/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def test_every_function_fits_lambdas_unzipped_limit_with_margin(
    built: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = function_sizes(built)
    template = read_template(ROOT / "template.yaml")
    declared = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(sizes) == declared
    with capsys.disabled():
        print(f"\n{'function':<20} {'code':>10} {'layers':>12} {'unzipped':>12}  (limit 250 MiB)")
        for name, size in sorted(sizes.items()):
            print(
                f"{name:<20} {size['code'] / 1024:>8.1f}Ki {size['layers'] / MB:>10.2f}Mi "
                f"{size['total'] / MB:>10.2f}Mi  ({size['total']:,} bytes)"
            )
    over = {name: size["total"] for name, size in sizes.items() if size["total"] > BUDGET_BYTES}
    assert not over, f"over {BUDGET_BYTES / MB:.0f} MiB (90% of Lambda's 250 MiB): {over}"


def test_layer_holds_groveflow_without_the_local_engine_tests_or_stale_bytecode(
    built: dict[str, Any],
) -> None:
    python = layer_dir(built)
    assert (python / "groveflow" / "training" / "_build.py").is_file()
    assert not (python / "groveflow" / "local").exists()
    for absent in ("moto", "yaml"):
        assert not (python / absent).exists(), f"{absent} is in the layer"
    # the AWS SDK is the layer's own, with the service models the functions call: S3, and
    # Lambda's for the plan's GetAccountSettings
    models = {p.name for p in (python / "botocore" / "data").iterdir() if p.is_dir()}
    assert models == {"s3", "lambda"}
    assert not [p for p in python.rglob("tests") if p.is_dir()]
    assert not list(python.rglob("*.pyi"))
    pyc = list(python.rglob("*.pyc"))
    assert pyc, "the layer is not precompiled"
    assert all(".cpython-312." in p.name for p in pyc), "bytecode for another Python than 3.12"
    compiled = {p.name.split(".")[0] for p in (python / "groveflow" / "__pycache__").glob("*.pyc")}
    for package in ("artifact", "training"):  # packages since issue 16
        if list((python / "groveflow" / package / "__pycache__").glob("__init__.*.pyc")):
            compiled.add(package)
    assert {"training", "prediction", "storage", "artifact"} <= compiled


def test_handlers_import_and_fit_on_the_built_layer(built: dict[str, Any]) -> None:
    # GIVEN the runtime's Python with nothing on its path but the built function and layer
    interpreter = python312()
    if interpreter is None:
        pytest.skip("no python3.12 here to import the layer with")
    for logical_id, resource in built["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code = BUILD / resource["Properties"]["CodeUri"]
        layer = function_layer(resource)
        smoke = (
            "import sys; sys.path[:0] = sys.argv[1:]\nimport app\nassert callable(app.handler)\n"
        )
        # Exit without interpreter teardown, as a Lambda sandbox never tears down: pyarrow's
        # thread pool can abort the process there ("terminate called without an active
        # exception") once in a while on a loaded machine, after the work succeeded.
        finish = "\nsys.stdout.flush(); import os; os._exit(0)\n"
        # WHEN its handler module is imported there and its layer does its work (-S: no site dirs)
        result = subprocess.run(
            [
                interpreter,
                "-S",
                "-c",
                smoke + SDK_SMOKE + SMOKE[layer] + finish,
                str(code),
                str(layer_dir(built, layer)),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"},
        )
        # THEN it works: nothing the handler needs was stripped or built for the wrong platform
        assert result.returncode == 0, f"{logical_id}: {result.stderr}"

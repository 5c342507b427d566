"""The functions as built: `sam build`'s output (.aws-sam/build) run by the local engine on
python3.12 with nothing on each function's path but its built code, its layers and the
standard library, so what the layers lack or pin differently fails here, not on AWS.

They run wherever the build exists (`make test` and `make build-check` build it first), and
skip, by name, only where it does not.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import groveflow
from conftest import ROOT, load_event, unique_name
from groveflow.engines import Local
from groveflow.layout import keys
from groveflow.local import LocalEngine
from groveflow.local.sandbox import IMPORTS_PREFIX
from groveflow.local.server import CREDENTIALS, Server
from groveflow.local.template import REGION, FunctionSpec, load_build
from groveflow.local.workers import WorkerPool, runtime_python

BUILD = ROOT / ".aws-sam" / "build"

pytestmark = pytest.mark.skipif(
    not (BUILD / "template.yaml").is_file(),
    reason="no .aws-sam/build: `make build` builds it (`make test` does)",
)

# The digits example at 40 trees (4 groves of 10) for CI's time: the same data and seed.
N_TREES = 40


def _train(engine: LocalEngine, request: dict[str, Any]) -> tuple[Any, bytes]:
    run_id = unique_name("as-built")
    result = engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    forest = engine.s3.get_object(Bucket=engine.bucket, Key=keys.forest(run_id))["Body"].read()
    return result, forest


def _stale() -> str:
    """Which of groveflow's sources the build's layers hold another version of, if any (a
    build older than src/ runs older code than the development venv)."""
    source = ROOT / "src" / "groveflow"
    stale = set()
    for layer in ("DependenciesLayer", "IngestLayer"):
        built = BUILD / layer / "python" / "groveflow"
        for path in source.rglob("*.py"):
            relative = path.relative_to(source)
            if relative.parts[0] == "local":  # the local engine is not in the layers
                continue
            copy = built / relative
            if not copy.is_file() or copy.read_bytes() != path.read_bytes():
                stale.add(str(relative))
    if not stale:
        return "the build holds src/groveflow as it is"
    return f"the build's groveflow is not src/'s ({', '.join(sorted(stale))}): `make build`"


def _imports(log_path: Path) -> list[dict[str, Any]]:
    """The as-built workers' IMPORTS lines: where each invocation's packages came from."""
    return [
        json.loads(line[len(IMPORTS_PREFIX) :])
        for line in log_path.read_text().splitlines()
        if line.startswith(IMPORTS_PREFIX)
    ]


@pytest.fixture(scope="module")
def built_engine(state_dir: Path) -> Iterator[LocalEngine]:
    """The local engine running the build (its sandboxes stay warm between tests)."""
    with LocalEngine(ROOT, workers=2, state_dir=state_dir, build_dir=BUILD) as running:
        yield running


def _check_imports(engine: LocalEngine, functions: set[str], packages: set[str]) -> None:
    """Each of ``functions`` ran on python3.12 with ``packages`` imported from its built layer,
    and nothing from anywhere else (the workers' IMPORTS lines)."""
    imports = [line for line in _imports(engine.log_path) if line["function"] in functions]
    assert {line["function"] for line in imports} == functions
    for line in imports:
        assert line["python"].startswith("3.12.")
        assert line["executable"] == runtime_python("python3.12")
        (layer,) = engine.stack.functions[line["function"]].layers
        assert list(line["imported_from"]) == [str(layer / "python")], line
        assert packages <= set(line["imported_from"][str(layer / "python")]), line


def test_digits_trained_as_built_equals_the_development_run(
    engine: LocalEngine, built_engine: LocalEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the digits example, trained by the development venv's workers
    request = {**load_event("train-digits.json"), "n_trees": N_TREES}
    development, development_forest = _train(engine, request)
    # WHEN it is trained again by the functions as built, on python3.12
    built, built_forest = _train(built_engine, request)
    # THEN the forest is the same, byte for byte
    assert built.output["trees_built"] == N_TREES
    assert built_forest == development_forest, _stale()
    # and every function ran on python3.12 with numpy, scikit-learn, botocore and groveflow
    # from its built layer (DependenciesLayer), and nothing from anywhere else
    ran = {invocation.function for invocation in built.invocations}
    assert ran == {"PlanFunction", "BuildGroveFunction", "MergeFunction"}
    assert {built_engine.stack.functions[name].layers[0].name for name in ran} == {
        "DependenciesLayer"
    }
    _check_imports(built_engine, ran, {"numpy", "sklearn", "botocore", "boto3", "groveflow"})
    cold = [i.init_ms for i in built.invocations if i.init_ms is not None]
    with capsys.disabled():
        print(
            f"\ndigits, {N_TREES} trees, 2 workers: development {development.seconds:.2f} s, "
            f"as built {built.seconds:.2f} s ({len(cold)} cold starts"
            + (f", init {min(cold):.0f}-{max(cold):.0f} ms)" if cold else ")")
        )


def test_parquet_in_s3_is_ingested_as_built_as_in_development(
    engine: LocalEngine, built_engine: LocalEngine
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    # GIVEN a Parquet table in the local bucket
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 3))
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X[:, 0] > X[:, 1]})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    key = f"datasets/{unique_name('as-built')}/table.parquet"
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=buffer.getvalue().to_pybytes())
    request = {"data": {"uri": f"s3://{engine.bucket}/{key}", "target": "y"}, "n_trees": 10}
    # WHEN the development venv's workers and the functions as built train on it
    _, development_forest = _train(engine, request)
    built, built_forest = _train(built_engine, request)
    # THEN the Ingest function read it with its built layer's pyarrow and botocore, and the
    # forests are the same, byte for byte
    assert "IngestFunction" in {invocation.function for invocation in built.invocations}
    assert built_engine.stack.functions["IngestFunction"].layers[0].name == "IngestLayer"
    _check_imports(built_engine, {"IngestFunction"}, {"pyarrow", "botocore", "groveflow"})
    assert built_forest == development_forest, _stale()


def test_the_api_trains_and_predicts_as_built_as_the_development_venv_predicts(
    engine: LocalEngine, state_dir: Path
) -> None:
    # GIVEN the Python API's local engine running the build
    request = {**load_event("train-digits.json"), "n_trees": 10}
    scoring = load_event("predict-digits.json")
    with Local(build_dir=BUILD, workers=2, state_dir=state_dir) as built_engine:
        # WHEN it trains a forest and scores the digits with it
        trained = groveflow.train(request, engine=built_engine, run_id=unique_name("api-built"))
        scored = groveflow.predict(
            {**scoring, "model": trained.run_id},
            engine=built_engine,
            run_id=unique_name("api-built-scores"),
        )
        functions = {invocation.function for invocation in built_engine.engine.invocations}
    # and the development venv's workers score the digits with the same model
    development = engine.run(
        "PredictStateMachine",
        {**scoring, "model": trained.run_id},
        name=unique_name("development-scores"),
    )
    # THEN both succeed, every function of both state machines ran as built, and the scores
    # are the same, byte for byte
    assert trained.succeeded and scored.succeeded, (scored.error, scored.cause)
    assert development.status == "SUCCEEDED", (development.error, development.cause)
    assert functions == {
        "PlanFunction",
        "BuildGroveFunction",
        "MergeFunction",
        "PlanPredictionsFunction",
        "ScoreShardFunction",
        "FinishPredictionsFunction",
    }
    assert scored.predictions is not None and scored.predictions["n_rows"] == 1797
    assert _parts(engine, scored.run_id) == _parts(engine, development.output["prediction_id"])


def _parts(engine: LocalEngine, prediction_id: str) -> list[bytes]:
    """A prediction's scored parts, in order."""
    prefix = keys.predictions_prefix(prediction_id)
    listing = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=prefix)
    names = sorted(o["Key"] for o in listing["Contents"] if "/part-" in o["Key"])
    assert names
    return [engine.s3.get_object(Bucket=engine.bucket, Key=n)["Body"].read() for n in names]


# ------------------------------------------------------------------ S3 operations

S3_PROBE = """
import sys
import tempfile
from pathlib import Path


def handler(event, context):
    import botocore
    from groveflow import storage

    sent = []

    def record(params, model, **_):
        sent.append([model.name, sorted(params)])

    s3 = storage._s3()
    s3.meta.events.register("before-parameter-build.s3", record)
    bucket, prefix = event["bucket"], event["prefix"]
    # groveflow.storage, as the functions call it
    assert storage.create_bytes(bucket, prefix + "claim", b"1", metadata={"run": "a"})
    assert not storage.create_bytes(bucket, prefix + "claim", b"2")  # If-None-Match: *
    storage.put_bytes(bucket, prefix + "object", b"body", metadata={"k": "v"})
    assert storage.get_object(bucket, prefix + "object") == (b"body", {"k": "v"})
    assert storage.exists(bucket, prefix + "object")
    assert not storage.exists(bucket, prefix + "missing")
    large = bytes(range(256)) * (9 * 4096)  # 9 MiB: over s3transfer's 8 MiB threshold
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "large"
        path.write_bytes(large)
        storage.put_file(bucket, prefix + "large", path)  # multipart
        storage.download(f"s3://{bucket}/{prefix}large", Path(scratch) / "back")  # ranged
        assert (Path(scratch) / "back").read_bytes() == large
    for n in range(1001):  # more than one page of a listing
        storage.put_bytes(bucket, f"{prefix}many/{n:04d}", b"")
    assert len(storage.list_keys(bucket, prefix + "many/")) == 1001
    storage.delete(bucket, prefix + "object")
    assert not storage.exists(bucket, prefix + "object")
    # the client side's calls (engines.Stack, groveflow.catalog), with their parameters
    s3.head_object(Bucket=bucket, Key=prefix + "claim")
    s3.put_object(Bucket=bucket, Key=prefix + "dataset", Body=b"x")
    s3.get_object(Bucket=bucket, Key=prefix + "dataset")["Body"].read()
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    assert [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])] == [
        prefix + "many/"
    ]
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    versions = [
        {"Key": item["Key"], "VersionId": item["VersionId"]}
        for page in pages
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]
    for start in range(0, len(versions), 1000):
        batch = versions[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    assert not storage.list_keys(bucket, prefix)
    return {
        "sent": sent,
        "python": list(sys.version_info[:2]),
        "files": {"botocore": botocore.__file__, "groveflow.storage": storage.__file__},
    }
"""

TRANSFERS = {
    # s3transfer's managed calls: the operations a large file's upload and download make
    "upload_file": {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"},
    "download_file": {"HeadObject", "GetObject"},
}


def _s3_calls_in_groveflow() -> list[tuple[str, str, frozenset[str]]]:
    """Every S3 client call in src/groveflow (the local engine's own aside): where it is, the
    operation, and the keyword parameters it passes."""
    methods = boto3.client("s3", region_name=REGION).meta.method_to_api_mapping
    calls = []
    for path in sorted((ROOT / "src" / "groveflow").rglob("*.py")):
        if "local" in path.relative_to(ROOT / "src" / "groveflow").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver, method = node.func.value, node.func.attr
            operation = None
            if method == "paginate" and isinstance(receiver, ast.Call):
                paginated = receiver  # s3.get_paginator("list_objects_v2").paginate(...)
                if isinstance(paginated.func, ast.Attribute) and paginated.args:
                    receiver = paginated.func.value
                    name = paginated.args[0]
                    if isinstance(name, ast.Constant) and name.value in methods:
                        operation = methods[name.value]
            elif method in methods or method in TRANSFERS:
                operation = methods.get(method, method)
            if operation is None or "s3" not in ast.unparse(receiver).lower():
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            calls.append((where, operation, frozenset(k.arg for k in node.keywords if k.arg)))
    return calls


@pytest.fixture(scope="module")
def s3_bucket() -> str:
    """A bucket on the local engine's S3 server."""
    Server.start()
    s3 = boto3.client(
        "s3",
        endpoint_url=Server.endpoint(),
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = "groveflow-as-built-s3"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def test_every_s3_call_groveflow_makes_is_accepted_by_each_built_layers_botocore(
    s3_bucket: str, tmp_path: Path
) -> None:
    # GIVEN every S3 call in groveflow's source, and each layer set the build's functions use
    calls = _s3_calls_in_groveflow()
    assert any(parameters >= {"IfNoneMatch"} for _, _, parameters in calls)
    stack = load_build(BUILD, bucket=s3_bucket)
    layer_sets = sorted({spec.layers for spec in stack.functions.values()})
    assert len(layer_sets) == 2  # DependenciesLayer, IngestLayer
    (tmp_path / "app.py").write_text(S3_PROBE)
    python = runtime_python("python3.12")
    assert python is not None
    environment = {
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": Server.endpoint(),
        "AWS_ENDPOINT_URL_S3": Server.endpoint(),
    }
    pool = WorkerPool(1, environment, python=python)
    try:
        for layers in layer_sets:
            # WHEN a python3.12 worker with only that layer on its path makes them all
            spec = FunctionSpec(
                logical_id=f"S3ProbeOn{layers[0].name}",  # a sandbox of its own
                function_name=f"as-built-S3ProbeOn{layers[0].name}",
                code_dir=tmp_path,
                handler="app.handler",
                environment={},
                timeout_seconds=600,
                memory_mb=1024,
                layers=layers,
            )
            payload = {"bucket": s3_bucket, "prefix": f"{layers[0].name}/"}
            outcome = pool.invoke(spec, json.dumps(payload).encode())
            # THEN the layer's botocore accepts each, with its parameters, and moto answers
            body = json.loads(outcome.payload)
            assert outcome.error_type is None, body
            assert body["python"] == [3, 12]
            for module, file in body["files"].items():
                assert Path(file).is_relative_to(layers[0] / "python"), (module, file)
            sent = [(operation, set(parameters)) for operation, parameters in body["sent"]]
            for where, operation, parameters in calls:
                for name in TRANSFERS.get(operation, {operation}):
                    assert any(o == name and p >= parameters for o, p in sent), (
                        f"{where} calls {operation} with {sorted(parameters)}, which the probe "
                        f"does not make through {layers[0].name}: add it to S3_PROBE"
                    )
            assert any(o == "ListObjectsV2" and "ContinuationToken" in p for o, p in sent)
            assert any(o == "GetObject" and "Range" in p for o, p in sent)
    finally:
        pool.close()


def test_the_command_line_invokes_a_handler_as_built(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    # GIVEN a Plan event, as the state machine would send it
    event = tmp_path / "plan-event.json"
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2}
    event.write_text(json.dumps({"request": request, "execution_name": "invoked"}))
    # WHEN `groveflow invoke --build-dir` runs the built PlanFunction
    command = [sys.executable, "-m", "groveflow.cli", "invoke", "PlanFunction", str(event)]
    state = ["--state-dir", str(tmp_path / "state")]
    done = subprocess.run(
        [*command, *state, "--build-dir", str(BUILD)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # THEN the built function plans the run; and a directory with no build is one line
    assert done.returncode == 0, done.stderr
    planned = json.loads(done.stdout)
    assert (planned["run_id"], planned["n_groves"]) == ("invoked", 2)
    missing = subprocess.run(
        [*command, *state, "--build-dir", str(tmp_path / "nothing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert missing.returncode != 0
    assert missing.stderr.startswith("groveflow: ") and "Traceback" not in missing.stderr

"""A Map's result is held in the state unless a ResultWriter writes it to S3, and a state holds
256 KiB at most: failures within the tolerance must not fail a run by their size alone.

Failing groves come from a definition variant (a Choice in the item processor sends the
first 300 to a Fail state with the error and cause Lambda reports for a Python handler that
died in scikit-learn), so the test spends no worker on them: 700 trivial groves run for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, unique_name
from groveflow.local import LocalEngine
from groveflow.local.moto_compat import MAX_PAYLOAD_BYTES

N_GROVES, N_FAILING, TOLERATED = 1000, 300, 35
REQUEST = {
    "data": {"uri": "sklearn:iris"},
    "n_trees": N_GROVES,
    "grove_size": 1,
    "tolerated_failure_percentage": TOLERATED,
    "model": {"params": {"max_depth": 2}},
}
# The error document Lambda's Python runtime returns for an unhandled exception.
TRACE = [
    '  File "/var/task/app.py", line 12, in handler\n'
    "    return build_grove(event, bucket=environment.bucket())\n",
    '  File "/opt/python/groveflow/telemetry.py", line 42, in wrapped\n'
    "    result: dict[str, Any] = instrumented(event, context)\n",
    '  File "/opt/python/groveflow/training.py", line 301, in build_grove\n    estimator.fit(X, y)\n',
    '  File "/opt/python/sklearn/base.py", line 1389, in wrapper\n'
    "    return fit_method(estimator, *args, **kwargs)\n",
    '  File "/opt/python/sklearn/ensemble/_forest.py", line 487, in fit\n'
    "    trees = Parallel(n_jobs=self.n_jobs, verbose=self.verbose, prefer='threads')(\n",
    '  File "/opt/python/sklearn/tree/_classes.py", line 472, in _fit\n'
    "    builder.build(self.tree_, X, y, sample_weight, missing_values_in_feature_mask)\n",
]
CAUSE = json.dumps(
    {
        "errorMessage": "Unable to allocate 1.21 GiB for an array with shape (162000000,)",
        "errorType": "MemoryError",
        "requestId": "5c3f2a8e-9d41-4b7e-8f0a-2e6d1c9b7a54",
        "stackTrace": TRACE,
    }
)


def _variant(root: Path, *, result_writer: bool) -> Path:
    """A project copy whose BuildGroves fails its first N_FAILING groves without invoking."""
    shutil.copy(ROOT / "template.yaml", root / "template.yaml")
    (root / "functions").symlink_to(ROOT / "functions")
    (root / "statemachine").mkdir()
    for path in (ROOT / "statemachine").glob("*.asl.json"):
        definition = json.loads(path.read_text())
        if path.name == "train.asl.json":
            build = definition["States"]["BuildGroves"]
            processor = build["ItemProcessor"]
            processor["States"]["FailSome"] = {
                "Type": "Choice",
                "Choices": [{"Variable": "$.grove", "NumericLessThan": N_FAILING, "Next": "Died"}],
                "Default": processor["StartAt"],
            }
            processor["States"]["Died"] = {"Type": "Fail", "Error": "MemoryError", "Cause": CAUSE}
            processor["StartAt"] = "FailSome"
            if not result_writer:
                del build["ResultWriter"]
        (root / "statemachine" / path.name).write_text(json.dumps(definition))
    return root


def _run(root: Path, state_dir: Path) -> tuple[Any, LocalEngine]:
    engine = LocalEngine(root, workers=2, state_dir=state_dir)
    run_id = unique_name("payload")
    result = engine.run("TrainStateMachine", {**REQUEST, "run_id": run_id}, name=run_id)
    return result, engine


@pytest.fixture(scope="module")
def with_writer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = _variant(tmp_path_factory.mktemp("with-writer"), result_writer=True)
    result, engine = _run(root, tmp_path_factory.mktemp("state"))
    try:
        results = engine.s3.list_objects_v2(
            Bucket=engine.bucket, Prefix=f"map-results/runs/{result.output['run_id']}/"
        )
        files = {
            item["Key"].rsplit("/", 1)[1]: json.loads(
                engine.s3.get_object(Bucket=engine.bucket, Key=item["Key"])["Body"].read()
            )
            for item in results.get("Contents", [])
        }
    finally:
        engine.close()
    return result, files


def test_failures_within_tolerance_succeed_with_the_results_in_s3(with_writer: Any) -> None:
    # GIVEN the train definition, 1,000 groves of which 300 fail, 35 % tolerated
    result, files = with_writer
    # THEN the run succeeds and reports the trees it built
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert (result.output["trees_requested"], result.output["trees_built"]) == (1000, 700)
    assert result.output["groves_missing"] == N_FAILING
    # AND the Map's results are in S3, under the run's prefix, as AWS writes them
    assert set(files) == {"manifest.json", "SUCCEEDED_0.json", "FAILED_0.json"}
    succeeded, failed = files["SUCCEEDED_0.json"], files["FAILED_0.json"]
    assert [json.loads(r["Input"])["grove"] for r in failed] == list(range(N_FAILING))
    assert {(r["Status"], r["Error"], r["Cause"]) for r in failed} == {
        ("FAILED", "MemoryError", CAUSE)
    }
    assert len(succeeded) == N_GROVES - N_FAILING
    # AND held in the state instead, they would pass 256 KiB: each failed child whole,
    # each success its output (what AWS's Map returns without a ResultWriter)
    held = failed + [json.loads(r["Output"]) for r in succeeded]
    assert len(json.dumps(held, separators=(",", ":")).encode()) > MAX_PAYLOAD_BYTES


def test_the_same_definition_without_a_result_writer_dies_of_its_payload(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # GIVEN the same definition and input, without BuildGroves' ResultWriter
    root = _variant(tmp_path_factory.mktemp("without-writer"), result_writer=False)
    # WHEN it runs
    result, engine = _run(root, tmp_path_factory.mktemp("state"))
    engine.close()
    # THEN it fails with States.DataLimitExceeded, past BuildGroves' Catch, before Merge
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded"), result.cause
    assert "'BuildGroves' returned a result with a size exceeding" in result.cause
    functions = {i.function for i in result.invocations}
    assert "MergeFunction" not in functions
    assert "BuildGroveFunction" in functions

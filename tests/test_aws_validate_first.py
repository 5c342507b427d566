"""A Parquet run with a bad request is refused before anything is converted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import unique_name


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris

    iris = load_iris()
    columns = {f"f{i}": iris.data[:, i] for i in range(iris.data.shape[1])}
    path = tmp_path_factory.mktemp("parquet") / "iris.parquet"
    pq.write_table(pa.table({**columns, "target": iris.target}), path)
    return path


def _functions(result: Any) -> list[str]:
    return [i.function for i in result.invocations]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": {"params": {"max_dept": 3}}}, "did you mean 'max_depth'?"),
        ({"n_trees": 0}, "n_trees"),
        ({"predict": {"data": {"uri": "rows.parquet"}, "probabilities": "yes"}}, "probabilities"),
    ],
)
def test_a_bad_training_request_converts_nothing(
    engine: Any, parquet_file: Path, change: dict[str, Any], named: str
) -> None:
    # GIVEN a Parquet training input with a mistake Plan would refuse
    run_id = unique_name("bad-parquet")
    request = {"data": {"uri": str(parquet_file), "target": "target"}, "run_id": run_id, **change}
    # WHEN it runs
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN it fails by name, and the only function invoked was the check: nothing converted
    assert (result.status, result.error) == ("FAILED", "InvalidRequest"), result.cause
    assert named in result.cause
    assert _functions(result) == ["ValidateRequestFunction"]


def test_a_bad_prediction_request_converts_nothing(engine: Any, parquet_file: Path) -> None:
    name = unique_name("bad-predict")
    request = {"model": "some-run", "data": {"uri": str(parquet_file)}, "shard_rows": -1}
    result = engine.run("PredictStateMachine", request, name=name)
    assert (result.status, result.error) == ("FAILED", "InvalidPredictRequest"), result.cause
    assert _functions(result) == ["ValidateRequestFunction"]


def test_a_good_parquet_request_is_checked_then_converted_then_trained(
    engine: Any, parquet_file: Path
) -> None:
    run_id = unique_name("good-parquet")
    request = {
        "data": {"uri": str(parquet_file), "target": "target"},
        "n_trees": 2,
        "grove_size": 1,
        "run_id": run_id,
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert _functions(result)[:3] == [
        "ValidateRequestFunction",
        "IngestFunction",
        "PlanFunction",
    ]

"""End to end on real data: every source and format, both tasks, both estimators."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from groveflow.layout import keys


def _run(engine: Any, request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    run_id = unique_name("data")
    result = engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    body = engine.s3.get_object(Bucket=engine.bucket, Key=keys.manifest(run_id))["Body"].read()
    return result, json.loads(body)


def _table(seed: int, rows: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4))
    X[rng.random(X.shape) < 0.05] = np.nan  # forests accept missing features
    label = np.where(np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) > 0, "spam", "ham")
    value = 3 * np.nan_to_num(X[:, 2]) + rng.normal(scale=0.1, size=rows)
    return X, label, value


def _csv(X: np.ndarray, label: np.ndarray, value: np.ndarray) -> str:
    lines = ["f0,f1,f2,f3,label,value"]
    for row, lab, val in zip(X, label, value, strict=True):
        cells = ["" if math.isnan(v) else f"{v:.6f}" for v in row]
        lines.append(",".join([*cells, lab, f"{val:.6f}"]))
    return "\n".join(lines) + "\n"


def test_csv_file_with_string_labels_random_forest(engine: Any, tmp_path: Path) -> None:
    X, label, value = _table(1)
    (tmp_path / "mail.csv").write_text(_csv(X, label, value))
    request = {
        "data": {"uri": str(tmp_path / "mail.csv"), "target": "label", "exclude": ["value"]},
        "n_trees": 20,
        "grove_size": 5,
    }
    result, manifest = _run(engine, request)
    assert manifest["classes"] == ["ham", "spam"] and manifest["classes_dtype"].startswith("<U")
    assert manifest["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert result.output["metrics"]["accuracy"] > 0.8


def test_parquet_in_s3_regression_extra_trees(engine: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, _, value = _table(2)
    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "f3": X[:, 3], "value": value}),
        buffer,
    )
    key = f"datasets/{unique_name('parquet')}/table.parquet"
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=buffer.getvalue())
    request = {
        "data": {"uri": f"s3://{engine.bucket}/{key}", "target": "value"},
        "model": {"kind": "extra_trees", "task": "regression"},
        "n_trees": 20,
        "grove_size": 5,
    }
    result, manifest = _run(engine, request)
    assert manifest["kind"] == "extra_trees" and manifest["task"] == "regression"
    assert set(result.output["metrics"]) >= {"r2", "rmse", "mae"}
    assert result.output["metrics"]["r2"] > 0.8
    # the request was checked first, then the Parquet went through the converter (pyarrow's
    # own function), then the plan
    functions = [i.function for i in result.invocations]
    assert functions[:3] == ["ValidateRequestFunction", "IngestFunction", "PlanFunction"]
    assert manifest["data"]["uri"] == f"s3://{engine.bucket}/{key}"


def test_prefix_of_parquet_parts_with_string_labels_and_nulls(engine: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # GIVEN a prefix of Parquet parts, as Athena or Glue write them, with nulls in features
    X, label, _ = _table(6)
    prefix = f"datasets/{unique_name('parquet-parts')}/"
    for part in range(3):
        rows = slice(part * 100, (part + 1) * 100)
        columns = {f"f{i}": pa.array(X[rows, i], from_pandas=True) for i in range(4)}
        buffer = io.BytesIO()
        pq.write_table(pa.table({**columns, "label": label[rows].tolist()}), buffer)
        engine.s3.put_object(
            Bucket=engine.bucket, Key=f"{prefix}part-{part:04d}.parquet", Body=buffer.getvalue()
        )
    request = {
        "data": {"uri": f"s3://{engine.bucket}/{prefix}", "format": "parquet", "target": "label"},
        "n_trees": 10,
        "grove_size": 5,
    }
    # WHEN it trains
    result, manifest = _run(engine, request)
    # THEN every row is read, in order, with the user's labels
    assert manifest["data"]["n_rows"] == 300
    assert manifest["classes"] == ["ham", "spam"]
    assert result.output["metrics"]["accuracy"] > 0.8


def test_prefix_of_csv_parts_in_s3(engine: Any) -> None:
    X, label, value = _table(3)
    prefix = f"datasets/{unique_name('parts')}/"
    for part in range(3):
        rows = slice(part * 100, (part + 1) * 100)
        engine.s3.put_object(
            Bucket=engine.bucket,
            Key=f"{prefix}part-{part:04d}.csv",
            Body=_csv(X[rows], label[rows], value[rows]).encode(),
        )
    engine.s3.put_object(Bucket=engine.bucket, Key=f"{prefix}_SUCCESS", Body=b"")
    request = {
        "data": {"uri": f"s3://{engine.bucket}/{prefix}", "target": "label", "exclude": ["value"]},
        "n_trees": 10,
        "grove_size": 5,
    }
    _, manifest = _run(engine, request)
    assert manifest["data"]["n_rows"] == 300


def test_npz_file_extra_trees_classification(engine: Any, tmp_path: Path) -> None:
    X, label, _ = _table(4)
    np.savez(tmp_path / "d.npz", X=X, y=(label == "spam").astype(np.int64))
    request = {
        "data": {"uri": str(tmp_path / "d.npz")},
        "model": {"kind": "extra_trees"},
        "n_trees": 10,
        "grove_size": 5,
    }
    result, manifest = _run(engine, request)
    assert manifest["classes"] == [0, 1]
    assert result.output["metrics"]["roc_auc"] > 0.8


def test_split_is_recorded_and_identical_across_reruns(engine: Any) -> None:
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2, "seed": 5}
    _, first = _run(engine, request)
    _, second = _run(engine, request)
    assert first["data"]["test_rows_sha256"] == second["data"]["test_rows_sha256"]
    _, other_seed = _run(engine, {**request, "seed": 6})
    assert other_seed["data"]["test_rows_sha256"] != first["data"]["test_rows_sha256"]


def test_test_fraction_zero_trains_on_everything_and_says_so(engine: Any) -> None:
    result, manifest = _run(
        engine, {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2, "test_fraction": 0}
    )
    assert manifest["data"]["n_train"] == 150 and manifest["data"]["n_test"] == 0
    assert (
        result.output["metrics"]["n_test"] == 0 and "no metrics" in result.output["metrics"]["note"]
    )


# Tolerances: both forests have the same trees' distribution and differ only by their seeds,
# so their holdout scores differ by seed noise, which for 100 trees is well under 2 standard
# errors of a holdout accuracy (sqrt(p(1-p)/n_test): 0.009 on digits' 360 rows, 0.02 on
# breast_cancer's 114, 0.03 on wine's 36); for R² on diabetes' 89 rows, 0.05.
BUNDLED = [
    ("digits", "classification", "accuracy", 0.03),
    ("breast_cancer", "classification", "accuracy", 0.04),
    ("wine", "classification", "accuracy", 0.06),
    ("diabetes", "regression", "r2", 0.05),
]


@pytest.mark.parametrize(
    ("name", "task", "metric", "tolerance"), BUNDLED, ids=[b[0] for b in BUNDLED]
)
def test_bundled_datasets_score_like_scikit_learn(
    engine: Any, name: str, task: str, metric: str, tolerance: float
) -> None:
    from sklearn import ensemble, metrics

    # GIVEN a groveflow run of 100 trees, and its split
    params = {"min_samples_leaf": 2} if task == "regression" else {}
    request = {
        "data": {"uri": f"sklearn:{name}"},
        "model": {"task": task, "params": params},
        "n_trees": 100,
        "grove_size": 10,
    }
    result, manifest = _run(engine, request)

    def split(part: str) -> np.ndarray:
        body = engine.s3.get_object(Bucket=engine.bucket, Key=keys.split(manifest["run_id"], part))[
            "Body"
        ].read()
        return np.load(io.BytesIO(body), allow_pickle=False)

    # WHEN scikit-learn fits its own 100-tree forest with the same hyperparameters on that split
    cls = (
        ensemble.RandomForestClassifier
        if task == "classification"
        else ensemble.RandomForestRegressor
    )
    reference = cls(n_estimators=100, random_state=123, **params).fit(
        split("X_train"), split("y_train")
    )
    predicted = reference.predict(split("X_test"))
    scorer = metrics.accuracy_score if task == "classification" else metrics.r2_score
    expected = scorer(split("y_test"), predicted)
    # THEN the holdout metric is within seed noise of scikit-learn's
    assert abs(result.output["metrics"][metric] - expected) <= tolerance, (
        result.output["metrics"][metric],
        expected,
    )

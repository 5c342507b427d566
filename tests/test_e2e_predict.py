"""Distributed prediction on the local engine: answers equal the model's, row for row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from groveflow.artifact import load_forest
from groveflow.layout import keys

WINE = {"data": {"uri": "sklearn:wine"}, "n_trees": 12, "grove_size": 3, "seed": 4}


def _wine_csv(
    directory: Path, *, columns: list[str] | None = None, rows: slice = slice(None)
) -> tuple[Path, np.ndarray]:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    names = list(bunch.feature_names)
    X = bunch.data[rows]
    header = columns or ["id", *names]
    path = directory / f"{unique_name('wine')}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for number, row in enumerate(X):
            by_name = dict(zip(names, row, strict=True))
            writer.writerow(
                [f"w{number}" if c == "id" else repr(float(by_name.get(c, 1.0))) for c in header]
            )
    return path, X


def _parts(engine: Any, predictions_uri: str) -> list[dict[str, str]]:
    bucket, _, key = predictions_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        body = (
            engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"]
            .read()
            .decode()
        )
        rows.extend(csv.DictReader(io.StringIO(body)))
    return rows


def _model(engine: Any, run_id: str) -> Any:
    return load_forest(str(engine.run_dir(run_id) / "model"))


def _assert_rows_equal(
    rows: list[dict[str, str]], forest: Any, X: np.ndarray, *, ids: bool
) -> None:
    assert [int(r["row"]) for r in rows] == list(range(len(X)))
    if ids:
        assert [r["id"] for r in rows] == [f"w{i}" for i in range(len(X))]
    np.testing.assert_array_equal([int(r["prediction"]) for r in rows], forest.predict(X))
    proba = np.array([[float(r[f"proba_{c}"]) for c in forest.classes_] for r in rows])
    np.testing.assert_array_equal(proba, forest.predict_proba(X))


@pytest.fixture(scope="module")
def trained_with_scores(
    engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, str, np.ndarray]:
    path, X = _wine_csv(tmp_path_factory.mktemp("score"))
    run_id = unique_name("wine-scored")
    request = {
        **WINE,
        "run_id": run_id,
        "predict": {
            "data": {"uri": str(path), "id_column": "id"},
            "shard_rows": 40,
            "probabilities": True,
        },
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result, run_id, X


def test_training_run_scores_its_predict_section_in_shards(
    engine: Any, trained_with_scores: tuple[Any, str, np.ndarray]
) -> None:
    # GIVEN a training input with a predict section of 178 rows in shards of 40
    result, run_id, X = trained_with_scores
    # THEN the run's output says where the predictions are, in 5 parts
    predictions = result.output["predictions"]
    assert predictions["n_rows"] == 178
    assert predictions["n_parts"] == 5
    assert len([i for i in result.invocations if i.function == "ScoreShardFunction"]) == 5
    # and the concatenated parts equal the stored model's answers exactly, row for row
    _assert_rows_equal(
        _parts(engine, predictions["predictions_uri"]), _model(engine, run_id), X, ids=True
    )


@pytest.mark.parametrize(
    "trees_per_group", [None, 3, 5], ids=["whole-forest", "groups-of-3", "groups-of-5"]
)
def test_predict_state_machine_scores_an_existing_model(
    engine: Any,
    trained_with_scores: tuple[Any, str, np.ndarray],
    tmp_path: Path,
    trees_per_group: int | None,
) -> None:
    # GIVEN an existing model and a prefix of two files to score
    _, run_id, _ = trained_with_scores
    directory = tmp_path / "batch"
    directory.mkdir()
    first, X1 = _wine_csv(directory, rows=slice(0, 100))
    second, X2 = _wine_csv(directory, rows=slice(100, None))
    first.rename(directory / "part-0.csv")
    second.rename(directory / "part-1.csv")
    # WHEN the predict state machine runs on its own, whole or in groups of groves
    request = {
        "model": run_id,
        "data": {"uri": str(directory), "exclude": ["id"]},
        "shard_rows": 30,
        "probabilities": True,
        "trees_per_group": trees_per_group,
    }
    name = unique_name("predict")
    result = engine.run("PredictStateMachine", request, name=name, run_id=name)
    # THEN the parts, in order, equal the model's answers on the whole dataset
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["n_parts"] == 4 + 3
    _assert_rows_equal(
        _parts(engine, result.output["predictions_uri"]),
        _model(engine, run_id),
        np.vstack([X1, X2]),
        ids=False,
    )


def _bad_cases(directory: Path) -> list[tuple[str, dict[str, Any], str, str]]:
    from sklearn.datasets import load_wine

    names = list(load_wine().feature_names)
    missing, _ = _wine_csv(directory, columns=names[:-1])
    extra, _ = _wine_csv(directory, columns=[*names, "colour"])
    reordered, _ = _wine_csv(directory, columns=[names[1], names[0], *names[2:]])
    text = directory / "text.csv"
    text.write_text(",".join(names) + "\n" + ",".join(["red"] + ["1"] * (len(names) - 1)) + "\n")
    empty = directory / "empty.csv"
    empty.write_text(",".join(names) + "\n")
    good, _ = _wine_csv(directory, columns=names)
    return [
        (
            "missing-column",
            {"data": {"uri": str(missing)}},
            "InvalidPredictRequest",
            "missing ['proline']",
        ),
        (
            "extra-column",
            {"data": {"uri": str(extra)}},
            "InvalidPredictRequest",
            "extra ['colour']",
        ),
        (
            "reordered-columns",
            {"data": {"uri": str(reordered)}},
            "InvalidPredictRequest",
            "another order",
        ),
        (
            "non-numeric-column",
            {"data": {"uri": str(text)}},
            "InvalidPredictRequest",
            "non-numeric",
        ),
        ("empty-file", {"data": {"uri": str(empty)}}, "InvalidPredictRequest", "no rows"),
        (
            "missing-model",
            {"data": {"uri": str(good)}, "model": "no-such-run"},
            "ModelNotFound",
            "no-such-run",
        ),
        (
            "unknown-key",
            {"data": {"uri": str(good)}, "shard_row": 5},
            "InvalidPredictRequest",
            "did you mean 'shard_rows'",
        ),
    ]


def test_bad_prediction_inputs_fail_by_name_before_any_shard(
    engine: Any, trained_with_scores: tuple[Any, str, np.ndarray], tmp_path: Path
) -> None:
    _, run_id, _ = trained_with_scores
    for case, request, error, words in _bad_cases(tmp_path):
        name = unique_name(case)
        result = engine.run(
            "PredictStateMachine", {"model": run_id, **request}, name=name, run_id=name
        )
        assert (case, result.status, result.error) == (case, "FAILED", error), result.cause
        assert words in result.cause, (case, result.cause)
        assert not any(i.function == "ScoreShardFunction" for i in result.invocations), case
        listing = engine.s3.list_objects_v2(
            Bucket=engine.bucket, Prefix=keys.predictions_manifest(name)
        )
        assert listing.get("KeyCount", 0) == 0, case


def test_a_model_whose_manifest_is_absent_is_not_found(engine: Any, tmp_path: Path) -> None:
    # GIVEN a run that stopped before its manifest (its groves exist, its model does not)
    run_id = unique_name("no-manifest")
    engine.s3.put_object(Bucket=engine.bucket, Key=keys.forest(run_id), Body=b"half-written")
    good, _ = _wine_csv(tmp_path)
    name = unique_name("absent")
    result = engine.run(
        "PredictStateMachine",
        {"model": run_id, "data": {"uri": str(good), "exclude": ["id"]}},
        name=name,
        run_id=name,
    )
    assert result.status == "FAILED"
    assert result.error == "ModelNotFound"
    assert "no model manifest" in result.cause


def test_training_input_with_bad_predict_columns_fails_before_fan_out(
    engine: Any, tmp_path: Path
) -> None:
    from sklearn.datasets import load_wine

    names = list(load_wine().feature_names)
    wrong, _ = _wine_csv(tmp_path, columns=names[:-1])
    right, _ = _wine_csv(tmp_path, columns=names)
    name = unique_name("bad-predict")
    # WHEN a training input's predict section does not match the training columns
    result = engine.run(
        "TrainStateMachine",
        {**WINE, "run_id": name, "predict": {"data": {"uri": str(wrong)}}},
        name=name,
    )
    # THEN it fails at Plan (after the CSV rows were ingested), by name, and nothing of the
    # run is stored
    assert result.status == "FAILED"
    assert result.error == "InvalidPredictRequest"
    functions = [i.function for i in result.invocations]
    assert functions == ["ValidateRequestFunction", "IngestFunction", "PlanFunction"]
    assert (
        engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=keys.run_prefix(name)).get(
            "KeyCount", 0
        )
        == 0
    )
    # and the same run id with a corrected predict section trains and scores
    fixed = {**WINE, "run_id": name, "predict": {"data": {"uri": str(right)}}}
    again = engine.run("TrainStateMachine", fixed, name=unique_name("fixed"), run_id=name)
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert again.output["predictions"]["n_rows"] == 178


def test_a_shard_that_keeps_failing_is_retried_then_reported_by_name(
    trained_with_scores: tuple[Any, str, np.ndarray], state_dir: Path, tmp_path: Path
) -> None:
    from conftest import ROOT
    from groveflow.local import LocalEngine
    from groveflow.local.faults import Fault, FaultInjector

    class ShardOneOutOfMemory(FaultInjector):
        def decide(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
            hit = function == "ScoreShardFunction" and payload["shard"] == 1
            return Fault("oom") if hit else None

    # GIVEN an existing model, and a shard whose every attempt runs out of memory
    _, run_id, _ = trained_with_scores
    path, _ = _wine_csv(tmp_path)
    with LocalEngine(ROOT, workers=2, state_dir=state_dir, faults=ShardOneOutOfMemory()) as engine:
        name = unique_name("failing-shard")
        request = {"model": run_id, "data": {"uri": str(path), "exclude": ["id"]}, "shard_rows": 50}
        # WHEN the predict state machine runs
        result = engine.run("PredictStateMachine", request, name=name, run_id=name)
        # THEN the shard was retried, the run fails by name, and no predictions manifest exists
        attempts = [
            i
            for i in result.invocations
            if i.function == "ScoreShardFunction" and i.payload["shard"] == 1
        ]
        assert len(attempts) == 2  # out of memory is deterministic: retried once
        assert result.status == "FAILED"
        assert result.error == "States.ExceedToleratedFailureThreshold"
        listing = engine.s3.list_objects_v2(
            Bucket=engine.bucket, Prefix=keys.predictions_manifest(name)
        )
        assert listing.get("KeyCount", 0) == 0


def test_parquet_rows_are_ingested_then_scored(
    engine: Any, trained_with_scores: tuple[Any, str, np.ndarray], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_wine

    # GIVEN an existing model and the rows to score as Parquet, with an id column
    _, run_id, _ = trained_with_scores
    bunch = load_wine()
    columns = {name: bunch.data[:, i] for i, name in enumerate(bunch.feature_names)}
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": [f"w{i}" for i in range(len(bunch.data))], **columns}), path)
    # WHEN the predict state machine scores it
    name = unique_name("parquet-scores")
    request = {
        "model": run_id,
        "data": {"uri": str(path), "id_column": "id"},
        "shard_rows": 60,
        "probabilities": True,
    }
    result = engine.run("PredictStateMachine", request, name=name, run_id=name)
    # THEN the request was checked, the Ingest step ran, and the answers equal the model's
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    functions = [i.function for i in result.invocations]
    assert functions[:2] == ["ValidateRequestFunction", "IngestFunction"]
    _assert_rows_equal(
        _parts(engine, result.output["predictions_uri"]),
        _model(engine, run_id),
        bunch.data,
        ids=True,
    )

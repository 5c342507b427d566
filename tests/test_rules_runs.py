"""Right answers when a run is grown, resumed or reused (issue 26): a warm scorer never scores
an older forest, a run started by execution name can be resumed and grown, a refusal names the
keys that differ."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from conftest import unique_name
from evidence import body
from groveflow.artifact import load_forest
from groveflow.layout import keys

DIGITS = {"data": {"uri": "sklearn:digits"}, "grove_size": 10, "seed": 3}


def _proba(engine: Any, predictions_uri: str) -> tuple[list[str], np.ndarray]:
    """The ``proba_<class>`` columns of a prediction's parts, in row order."""
    bucket, _, key = predictions_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        text = engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"].read()
        rows.extend(csv.DictReader(io.StringIO(text.decode())))
    columns = [c for c in rows[0] if c.startswith("proba_")]
    return columns, np.array([[float(r[c]) for c in columns] for r in rows])


def _predict(engine: Any, run_id: str) -> Any:
    name = unique_name("score")
    request = {
        "model": run_id,
        "data": {"uri": "sklearn:digits"},
        "probabilities": True,
        "shard_rows": 300,  # six shards: every worker of the engine scores one
    }
    result = engine.run("PredictStateMachine", request, name=name, run_id=name)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result


def test_a_grown_forest_is_scored_with_its_new_trees_on_a_warm_engine(engine: Any) -> None:
    from sklearn.datasets import load_digits

    X = load_digits().data
    # GIVEN a 20-tree digits forest, scored in six shards (every ScoreShard worker is warm)
    run_id = unique_name("warm-grow")
    first = engine.run(
        "TrainStateMachine", {**DIGITS, "n_trees": 20, "run_id": run_id}, name=unique_name(run_id)
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    _predict(engine, run_id)
    # WHEN the run grows to 40 trees and is scored again on the same engine
    grown = engine.run(
        "TrainStateMachine", {**DIGITS, "n_trees": 40, "run_id": run_id}, name=unique_name(run_id)
    )
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    assert json.loads(body(engine, keys.manifest(run_id)))["trees_built"] == 40
    again = _predict(engine, run_id)
    # THEN the probabilities are the grown forest's own, exactly
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.n_trees == 40
    columns, proba = _proba(engine, again.output["predictions_uri"])
    assert columns == [f"proba_{c}" for c in forest.classes_]
    assert np.max(np.abs(proba - forest.predict_proba(X))) == 0


def test_a_training_runs_predictions_under_their_own_id_are_kept_in_the_state_dir(
    engine: Any, state_dir: Any
) -> None:
    from groveflow.local.engine import mirrored

    # GIVEN a training input whose predict section names its own prediction_id
    run_id = unique_name("scored-run")
    prediction_id = unique_name("scored-run-predictions")
    request = {
        **DIGITS,
        "n_trees": 10,
        "run_id": run_id,
        "predict": {"data": {"uri": "sklearn:digits"}, "prediction_id": prediction_id},
    }
    # WHEN the run ends
    result = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["predictions"]["prediction_id"] == prediction_id
    # THEN its predictions are in the state directory, as the bucket holds them
    manifest_key = keys.predictions_manifest(prediction_id)
    on_disk = mirrored(state_dir, manifest_key)
    assert on_disk.is_file()
    assert on_disk.read_bytes() == body(engine, manifest_key)
    for part in json.loads(on_disk.read_bytes())["parts"]:
        part_key = f"{keys.predictions_prefix(prediction_id)}{part['key']}"
        assert mirrored(state_dir, part_key).read_bytes() == body(engine, part_key)

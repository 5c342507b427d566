"""FinishPredictions records what each shard reported, and reads no part (issue 27).

ScoreShard writes its part with its rows and sha256 as the object's metadata;
FinishPredictions reads them by HEAD. Every AWS call each function makes is recorded
inside its worker (:mod:`groveflow.local.access_log`), so a GET of a part is seen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import unique_name
from evidence import faults
from groveflow.layout import keys
from groveflow.local import access_log
from groveflow.local.faults import FaultInjector


@pytest.fixture(scope="module")
def model(engine: Any) -> str:
    run_id = unique_name("finish-model")
    request = {"data": {"uri": "sklearn:digits"}, "n_trees": 4, "grove_size": 2, "run_id": run_id}
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", result.cause
    return run_id


def _predict(engine: Any, model: str, record: Path, **more: Any) -> Any:
    prediction_id = unique_name("finish")
    request = {
        "model": model,
        "data": {"uri": "sklearn:digits"},
        "shard_rows": 400,
        "probabilities": True,
        "prediction_id": prediction_id,
        **more,
    }
    with faults(engine, FaultInjector(record_to=record)):
        return engine.run("PredictStateMachine", request, name=prediction_id)


def _object(engine: Any, key: str) -> bytes:
    body: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    return body


def test_finish_predictions_reads_no_part_and_records_what_the_shards_wrote(
    engine: Any, model: str, tmp_path: Path
) -> None:
    # GIVEN a prediction of 1,797 rows in 5 shards, every AWS call recorded
    record = tmp_path / "calls.jsonl"
    result = _predict(engine, model, record)
    assert result.status == "SUCCEEDED", result.cause
    prediction_id = result.output["prediction_id"]
    # WHEN FinishPredictions' calls are read
    calls = [
        c
        for c in access_log.read(record)
        if c["event"] == "call" and c["function"].endswith("FinishPredictionsFunction")
    ]
    # THEN it read no part: a HEAD each, no GET
    parts = [c for c in calls if "/part-" in c.get("key", "")]
    assert {c["operation"] for c in parts} == {"HeadObject"}
    assert len(parts) == result.output["n_parts"] == 5
    # AND the one object it GETs is the job record (no data, no part)
    gets = {c["key"] for c in calls if c["operation"] == "GetObject"}
    assert gets == {keys.predictions_job(prediction_id)}
    # AND the manifest records each part's true sha256 and rows, as before
    manifest = json.loads(_object(engine, keys.predictions_manifest(prediction_id)))
    prefix = keys.predictions_prefix(prediction_id)
    for part in manifest["parts"]:
        body = _object(engine, f"{prefix}{part['key']}")
        assert part["sha256"] == hashlib.sha256(body).hexdigest()
        assert part["rows"] == len(body.decode().splitlines()) - 1
    assert sum(p["rows"] for p in manifest["parts"]) == manifest["n_rows"] == 1797


def test_a_part_without_its_receipt_is_not_recorded(
    s3_env: Any, model: str, tmp_path: Path
) -> None:
    # GIVEN a scored prediction, one of whose parts is replaced by a copy without metadata
    from groveflow.errors import ShardMissing
    from groveflow.prediction import finish_predictions

    engine = s3_env
    result = _predict(engine, model, tmp_path / "calls.jsonl")
    assert result.status == "SUCCEEDED", result.cause
    prediction_id = result.output["prediction_id"]
    key = keys.predictions_part(prediction_id, 2)
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=_object(engine, key))
    # WHEN FinishPredictions runs again
    # THEN it refuses the part by name, with what to do
    with pytest.raises(ShardMissing, match=r"shard 2's part .* does not say its rows and sha256"):
        finish_predictions({"prediction_id": prediction_id}, bucket=engine.bucket)

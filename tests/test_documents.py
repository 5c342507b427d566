"""The run's documents: versions this groveflow does not read are refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import unique_name
from groveflow.artifact import load_forest
from groveflow.documents import MANIFEST_VERSION, check_manifest, grove_problem
from groveflow.errors import ArtifactError
from groveflow.layout import keys
from groveflow.storage import sha256_hex


@pytest.mark.parametrize(("name", "value"), [("format_version", 2), ("manifest_version", 99)])
def test_a_manifest_of_an_unknown_version_is_refused_everywhere_by_name(
    engine: Any, tmp_path: Path, name: str, value: int
) -> None:
    # GIVEN a trained model whose manifest says it was written by a newer groveflow
    run_id = unique_name("versions")
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 2, "run_id": run_id}
    assert engine.run("TrainStateMachine", request, name=run_id).status == "SUCCEEDED"
    key = keys.manifest(run_id)
    manifest = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read())
    assert manifest["manifest_version"] == MANIFEST_VERSION
    manifest[name] = value
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=json.dumps(manifest).encode())
    # WHEN it is loaded (from the mirror on disk) and used to score rows
    with pytest.raises(ArtifactError, match=rf"has {name}={value}; this groveflow reads"):
        load_forest(str(engine.run_dir(run_id) / "model"))
    scored = engine.run(
        "PredictStateMachine",
        {"model": run_id, "data": {"uri": "sklearn:iris"}},
        name=unique_name("versions-p"),
    )
    # THEN both refuse it by name, before any shard
    assert (scored.status, scored.error) == ("FAILED", "ArtifactError"), scored.cause
    assert f"{name}={value}" in scored.cause
    assert not [i for i in scored.invocations if i.function == "ScoreShardFunction"]


def test_a_hand_written_manifest_without_versions_is_read() -> None:
    assert check_manifest({"forest": {"key": "f.gfa", "sha256": "0" * 64}}, "x") is not None


@pytest.mark.parametrize(
    ("metadata", "seed", "sha256", "problem"),
    [
        ({"sha256": "bad", "seed": "1"}, 1, None, "do not match the checksum stored with it"),
        ({"sha256": sha256_hex(b"grove"), "seed": "2"}, 1, None, "built with seed 2"),
        ({"sha256": sha256_hex(b"grove"), "seed": "1"}, 1, "0" * 64, "model manifest's sha256"),
        ({"sha256": sha256_hex(b"grove"), "seed": "1"}, 1, sha256_hex(b"grove"), None),
    ],
)
def test_the_one_grove_check_names_each_problem(
    metadata: dict[str, str], seed: int, sha256: str | None, problem: str | None
) -> None:
    found = grove_problem(b"grove", metadata, seed=seed, sha256=sha256)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({"run_id": "r", "grove": -1, "seed": 1, "n_trees": 2}, "grove must be a whole number"),
        ({"run_id": "r", "grove": 0, "seed": "1", "n_trees": 2}, "seed must be a whole number"),
        ({"run_id": "r", "grove": 0, "seed": 1, "n_trees": 0}, "n_trees must be at least 1"),
        ({"grove": 0, "seed": 1, "n_trees": 2}, "run_id must be a non-empty string"),
    ],
)
def test_a_damaged_grove_task_is_refused_by_field(item: dict[str, Any], words: str) -> None:
    from groveflow.documents import GroveTask

    with pytest.raises(ArtifactError, match=words):
        GroveTask.from_item(item)


def test_tasks_round_trip_as_the_map_items_they_are_written_as() -> None:
    from groveflow.documents import GroveTask, ShardTask

    grove = GroveTask("run", 3, 12345, 10)
    assert GroveTask.from_item(grove.to_item()) == grove
    shard = ShardTask("p", 1, "rows.csv", 0, 100, 200, 100)
    assert ShardTask.from_item(shard.to_item()) == shard
    with pytest.raises(ArtifactError, match="stop is before start"):
        ShardTask.from_item({**shard.to_item(), "stop": 50})

"""At-least-once delivery as it really happens: faults met by the real handlers in their workers.

A crash here is a worker killed by SIGKILL, a timeout a worker killed by the pool for
overrunning a lowered Timeout, a duplicate two workers running the same grove at once.
What happened is read from the bucket's object versions and the calls the workers
recorded, not from what the handlers say about themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import unique_name
from evidence import (
    ONE_AT_A_TIME,
    SMALL,
    At,
    alive,
    body,
    calls,
    faults,
    grove_versions,
    has,
    met,
    s3_client_env,
    train,
    versioned,
    versions,
)
from groveflow.artifact import load_forest
from groveflow.errors import ModelNotFound
from groveflow.layout import keys
from groveflow.local import access_log
from groveflow.local.faults import Fault, FaultInjector

N_GROVES = 5


@pytest.fixture(scope="module")
def clean_forest(engine: Any) -> bytes:
    versioned(engine)
    run_id = unique_name("clean-real")
    result = train(engine, SMALL, run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return body(engine, keys.forest(run_id))


def test_a_grove_killed_after_writing_is_reused_by_its_retry(
    engine: Any, clean_forest: bytes, tmp_path: Path
) -> None:
    # GIVEN grove 3's first attempt killed just after its grove object is written
    record = tmp_path / "calls.jsonl"
    run_id = unique_name("crash-after-write")
    crash = At(
        "BuildGroveFunction",
        Fault("crash", "after:runs/*/groves/*"),
        where={"grove": 3},
        record_to=record,
    )
    # WHEN the run goes through the state machine
    with faults(engine, crash):
        result = train(engine, SMALL, run_id)
    # THEN the worker really died, the Map retried the grove, and the run succeeded
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    (fault,) = met(record)
    assert not alive(fault["pid"])
    attempts = [i for i in result.invocations if i.payload.get("grove") == 3]
    assert [i.error_type for i in attempts] == ["Runtime.ExitError", None]
    # and the retry read the stored grove and wrote nothing: one version, written by the dead one
    grove = keys.grove(run_id, 3)
    writers = [c["pid"] for c in calls(record, "PutObject", grove)]
    assert writers == [fault["pid"]]
    retry_reads = [c for c in calls(record, "GetObject", grove) if c["pid"] != fault["pid"]]
    assert len(retry_reads) == 1
    assert grove_versions(engine, run_id, N_GROVES) == [1] * N_GROVES
    assert body(engine, keys.forest(run_id)) == clean_forest


def test_a_grove_delivered_twice_at_once_is_one_object_with_the_same_bytes(
    engine: Any, clean_forest: bytes, tmp_path: Path
) -> None:
    # GIVEN grove 2 delivered to two workers at once, both fitting and meeting at the write
    record = tmp_path / "calls.jsonl"
    run_id = unique_name("duplicate")
    twice = At(
        "BuildGroveFunction",
        Fault("duplicate", "before:runs/*/groves/*"),
        where={"grove": 2},
        record_to=record,
    )
    # WHEN the run goes through the state machine
    with faults(engine, twice):
        result = train(engine, ONE_AT_A_TIME, run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # THEN two workers each wrote grove 2...
    grove = keys.grove(run_id, 2)
    writers = {c["pid"] for c in calls(record, "PutObject", grove)}
    assert len(writers) == 2 and writers == {f["pid"] for f in met(record)}
    # ... the same bytes and metadata (checksum, seed) to the same one key, and nothing else
    (first, first_meta), (second, second_meta) = versions(engine, grove)
    assert first == second
    assert {k: v for k, v in first_meta.items() if k != "fit-seconds"} == {
        k: v for k, v in second_meta.items() if k != "fit-seconds"
    }
    listing = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=keys.groves_prefix(run_id))
    assert [o["Key"] for o in listing["Contents"]] == [keys.grove(run_id, g) for g in range(5)]
    assert body(engine, keys.forest(run_id)) == clean_forest


def test_a_grove_overrunning_a_lowered_timeout_kills_its_worker_and_is_rebuilt(
    engine: Any, clean_forest: bytes, tmp_path: Path
) -> None:
    # GIVEN grove 1's first attempt held before its write, its Timeout lowered to 1 s
    record = tmp_path / "calls.jsonl"
    run_id = unique_name("timeout")
    slow = At(
        "BuildGroveFunction",
        Fault("timeout", "before:runs/*/groves/*", timeout_seconds=1),
        where={"grove": 1},
        record_to=record,
    )
    # WHEN the run goes through the state machine
    with faults(engine, slow):
        result = train(engine, SMALL, run_id)
    # THEN the attempt timed out, its worker was killed and replaced, the retry built the grove
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    attempts = [i for i in result.invocations if i.payload.get("grove") == 1]
    assert [i.error_type for i in attempts] == ["Sandbox.Timedout", None]
    (fault,) = met(record)
    assert not alive(fault["pid"])
    assert len(engine.pool._all) == 2
    grove = keys.grove(run_id, 1)
    # (the killed attempt's PutObject was held before it was sent: one version, the retry's)
    writers = [c["pid"] for c in calls(record, "PutObject", grove)]
    assert len(writers) == 2 and writers[0] == fault["pid"] != writers[1]
    assert grove_versions(engine, run_id, N_GROVES) == [1] * N_GROVES
    assert body(engine, keys.forest(run_id)) == clean_forest


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_merge_killed_around_the_forest_write_leaves_no_model_and_a_rerun_completes(
    engine: Any, clean_forest: bytes, tmp_path: Path, when: str
) -> None:
    # GIVEN a run whose merge is killed just before (or after) it writes the forest
    record = tmp_path / "calls.jsonl"
    run_id = unique_name(f"merge-killed-{when}")
    kill = At("MergeFunction", Fault("crash", f"{when}:runs/*/model/forest.gfa"), record_to=record)
    # WHEN it runs
    with faults(engine, kill):
        first = train(engine, SMALL, run_id)
    # THEN it fails by the runtime's name, the merge's worker is dead, and no model exists
    assert first.status == "FAILED"
    assert first.error == "Runtime.ExitError", first.cause
    (fault,) = met(record)
    assert not alive(fault["pid"])
    assert has(engine, keys.forest(run_id)) == (when == "after")
    assert not has(engine, keys.manifest(run_id))
    with s3_client_env(engine), pytest.raises(ModelNotFound):
        load_forest(f"s3://{engine.bucket}/{keys.manifest(run_id)}")
    # WHEN the run is started again with the same run id
    rerun = tmp_path / "rerun.jsonl"
    with faults(engine, FaultInjector(record_to=rerun)):
        second = train(engine, SMALL, run_id)
    # THEN it completes with the clean forest, and no grove builder wrote a grove again
    assert second.status == "SUCCEEDED", (second.error, second.cause)
    assert not [
        c
        for c in access_log.read(rerun)
        if c.get("operation") == "PutObject" and c["function"] == "BuildGroveFunction"
    ]
    assert body(engine, keys.forest(run_id)) == clean_forest
    assert has(engine, keys.manifest(run_id))


def test_fault_points_and_kinds_are_checked_by_name() -> None:
    for bad in ({"kind": "explode"}, {"kind": "crash", "point": "middle"}):
        with pytest.raises(ValueError, match="accepted"):
            Fault(**bad)

"""The merge's integrity checks, end to end: damage found between the groves and the merge.

Each case completes a run of its own, then reruns it with one grove damaged just as Merge is invoked
(after every builder has verified and reused its grove): the merge must fail by name,
write nothing, and leave the earlier model as it was; a resume must then rebuild the
damaged grove (read from the workers' recorded writes) and give the earlier forest back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from evidence import SMALL, body, faults, train
from groveflow import artifact, storage
from groveflow.layout import keys
from groveflow.local import access_log
from groveflow.local.engine import mirrored
from groveflow.local.faults import FaultInjector

Tamper = Callable[[Any, str], str]  # (engine, run_id) -> the damaged grove's key


class DamageAtMerge(FaultInjector):
    """Runs ``tamper`` once, as the engine is about to invoke Merge."""

    def __init__(self, engine: Any, run_id: str, tamper: Tamper) -> None:
        super().__init__()
        object.__setattr__(self, "pending", [lambda: tamper(engine, run_id)])

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> None:
        if function == "MergeFunction" and self.pending:  # type: ignore[attr-defined]
            self.pending.pop()()  # type: ignore[attr-defined]


def _grove(engine: Any, run_id: str, grove: int) -> tuple[bytes, dict[str, str], str]:
    key = keys.grove(run_id, grove)
    response = engine.s3.get_object(Bucket=engine.bucket, Key=key)
    return response["Body"].read(), response.get("Metadata", {}), key


def _put(engine: Any, key: str, blob: bytes, metadata: dict[str, str]) -> None:
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=blob, Metadata=metadata)


def stray(engine: Any, run_id: str) -> str:
    blob, metadata, _ = _grove(engine, run_id, 0)
    key = f"{keys.groves_prefix(run_id)}grove-99999.gfa"
    _put(engine, key, blob, metadata)
    return key


def bad_checksum(engine: Any, run_id: str) -> str:
    # A valid grove object in the wrong place: grove 0's bytes under grove 1's key and metadata.
    other, _, _ = _grove(engine, run_id, 0)
    _, metadata, key = _grove(engine, run_id, 1)
    _put(engine, key, other, metadata)
    return key


def wrong_seed(engine: Any, run_id: str) -> str:
    blob, metadata, key = _grove(engine, run_id, 2)
    _put(engine, key, blob, {**metadata, "seed": str(int(metadata["seed"]) + 1)})
    return key


def other_classes(engine: Any, run_id: str) -> str:
    # A well-formed grove with the right seed, checksum, trees and features, fitted on
    # labels 10, 11, 12 instead of wine's 0, 1, 2.
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    _, metadata, key = _grove(engine, run_id, 3)
    X, y = load_wine(return_X_y=True)
    fitted = RandomForestClassifier(n_estimators=2, random_state=int(metadata["seed"]))
    fitted.fit(X.astype(np.float32), y + 10)
    blob = artifact.encode_trees(fitted.estimators_, n_features=13, classes=fitted.classes_)
    _put(engine, key, blob, {**metadata, "sha256": storage.sha256_hex(blob)})
    return key


def deleted(engine: Any, run_id: str) -> str:
    key = keys.grove(run_id, 4)
    engine.s3.delete_object(Bucket=engine.bucket, Key=key)
    mirrored(engine.state_dir, key).unlink(missing_ok=True)  # gone from the state dir too
    return key


CASES = [
    (stray, "GroveMismatch", "grove-99999"),
    (bad_checksum, "GroveMismatch", "grove 1 (runs/"),
    (wrong_seed, "GroveMismatch", "grove 2 (runs/"),
    (other_classes, "GroveMismatch", "grove 3 has classes [10, 11, 12]"),
    (deleted, "GroveMissing", "groves [4]"),
]
REBUILT = {"bad_checksum": 1, "wrong_seed": 2, "other_classes": 3, "deleted": 4}


@pytest.fixture
def completed(engine: Any) -> tuple[str, bytes, bytes]:
    run_id = unique_name("integrity")
    result = train(engine, SMALL, run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return run_id, body(engine, keys.manifest(run_id)), body(engine, keys.forest(run_id))


@pytest.mark.parametrize(("tamper", "error", "named"), CASES)
def test_a_damaged_grove_fails_the_merge_by_name_and_a_resume_rebuilds_it(
    engine: Any,
    completed: tuple[str, bytes, bytes],
    tmp_path: Path,
    tamper: Tamper,
    error: str,
    named: str,
) -> None:
    run_id, manifest, forest = completed
    # GIVEN a completed run, rerun with one grove damaged after its builder reused it
    damage = DamageAtMerge(engine, run_id, tamper)
    with faults(engine, damage):
        # WHEN the merge runs
        result = train(engine, SMALL, run_id)
    # THEN it fails by name, naming the grove, and the earlier model is byte for byte untouched
    assert not damage.pending  # type: ignore[attr-defined]
    assert (result.status, result.error) == ("FAILED", error), result.cause
    assert named in result.cause
    assert body(engine, keys.manifest(run_id)) == manifest
    assert body(engine, keys.forest(run_id)) == forest
    damaged = tamper.__name__
    if damaged == "stray":
        # a resume cannot know the stray is not the user's: it is refused again, by name
        assert train(engine, SMALL, run_id).error == "GroveMismatch"
        key = f"{keys.groves_prefix(run_id)}grove-99999.gfa"
        engine.s3.delete_object(Bucket=engine.bucket, Key=key)
        mirrored(engine.state_dir, key).unlink(missing_ok=True)
    # WHEN the run is resumed
    record = tmp_path / "resume.jsonl"
    with faults(engine, FaultInjector(record_to=record)):
        resumed = train(engine, SMALL, run_id)
    # THEN the damaged grove alone was rebuilt, and the forest is the earlier one
    assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
    rebuilt = sorted(
        c["key"]
        for c in access_log.read(record)
        if c.get("operation") == "PutObject" and c["function"] == "BuildGroveFunction"
    )
    expected = [] if damaged == "stray" else [keys.grove(run_id, REBUILT[damaged])]
    assert rebuilt == expected
    assert body(engine, keys.forest(run_id)) == forest


def test_a_resume_rebuilds_a_grove_of_other_classes(
    engine: Any, completed: tuple[str, bytes, bytes], tmp_path: Path
) -> None:
    run_id, _, forest = completed
    with faults(engine, DamageAtMerge(engine, run_id, other_classes)):
        assert train(engine, SMALL, run_id).error == "GroveMismatch"
    resumed = train(engine, SMALL, run_id)
    assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
    assert body(engine, keys.forest(run_id)) == forest

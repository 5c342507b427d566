"""Evidence the reliability tests read instead of the handlers' own word.

What a run did is read from the bucket (every version of an object, with versioning on,
as template.yaml turns it on) and from the calls each worker recorded at botocore's level
(:mod:`groveflow.local.access_log`), never from a handler's ``reused`` flag.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from conftest import unique_name
from groveflow.layout import keys
from groveflow.local import access_log
from groveflow.local.faults import Fault, FaultInjector

# 5 groves of 2 trees on wine, one at a time (a duplicate needs the second worker free).
SMALL = {"data": {"uri": "sklearn:wine"}, "n_trees": 10, "grove_size": 2, "seed": 11}
ONE_AT_A_TIME = {**SMALL, "max_concurrency": 1}


class At(FaultInjector):
    """``fault`` on the given attempts of one function's invocations matching ``where``."""

    def __init__(
        self,
        function: str,
        fault: Fault,
        *,
        where: dict[str, Any] | None = None,
        attempts: tuple[int, ...] = (1,),
        record_to: Path | None = None,
    ) -> None:
        super().__init__(record_to=record_to)
        object.__setattr__(self, "rule", (function, fault, where or {}, attempts))

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
        wanted, fault, where, attempts = self.rule  # type: ignore[attr-defined]
        matches = all(payload.get(name) == value for name, value in where.items())
        return fault if function == wanted and matches and attempt in attempts else None


def versioned(engine: Any) -> None:
    """Turn on the bucket's versioning, as template.yaml does (every overwrite stays visible)."""
    engine.s3.put_bucket_versioning(
        Bucket=engine.bucket, VersioningConfiguration={"Status": "Enabled"}
    )


@contextlib.contextmanager
def faults(engine: Any, injector: FaultInjector) -> Iterator[None]:
    """Give a running engine ``injector`` for the block."""
    before = engine.faults
    engine.faults = injector
    try:
        yield
    finally:
        engine.faults = before


def versions(engine: Any, key: str) -> list[tuple[bytes, dict[str, str]]]:
    """Every stored version of ``key`` (oldest first): its bytes and user metadata."""
    listing = engine.s3.list_object_versions(Bucket=engine.bucket, Prefix=key)
    found = [v for v in listing.get("Versions", []) if v["Key"] == key]
    found.sort(key=lambda v: v["LastModified"])
    stored = []
    for version in found:
        response = engine.s3.get_object(
            Bucket=engine.bucket, Key=key, VersionId=version["VersionId"]
        )
        stored.append((response["Body"].read(), response.get("Metadata", {})))
    return stored


def grove_versions(engine: Any, run_id: str, n_groves: int) -> list[int]:
    """How many times each planned grove was written."""
    return [len(versions(engine, keys.grove(run_id, g))) for g in range(n_groves)]


def calls(
    path: Path, operation: str, key: str, function: str = "BuildGroveFunction"
) -> list[dict[str, Any]]:
    """The calls of ``operation`` on ``key`` that ``function``'s workers recorded."""
    return [
        r
        for r in access_log.read(path)
        if r["event"] == "call"
        and r["function"] == function
        and r["operation"] == operation
        and r.get("key") == key
    ]


def met(path: Path) -> list[dict[str, Any]]:
    """The faults the workers met, with their pids."""
    return [r for r in access_log.read(path) if r["event"] == "fault"]


def alive(pid: int) -> bool:
    """Whether a process exists (a killed worker is reaped by the pool)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def s3_client_env(engine: Any) -> Iterator[None]:
    """This process's groveflow.storage pointed at the engine's S3 (as its workers are)."""
    from groveflow import storage

    names = (
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    )
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(
        dict(zip(names, (engine.endpoint, "testing", "testing", "us-east-1"), strict=True))
    )
    storage._s3.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        storage._s3.cache_clear()


def train(engine: Any, request: dict[str, Any], run_id: str) -> Any:
    return engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=unique_name(run_id))


def has(engine: Any, key: str) -> bool:
    return engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=key).get("KeyCount", 0) > 0


def body(engine: Any, key: str) -> bytes:
    data: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    return data


def stored_npy(engine: Any, key: str) -> np.ndarray:
    """A ``.npy`` object the engine's bucket holds (a split, an OOB decision function)."""
    return np.load(io.BytesIO(body(engine, key)), allow_pickle=False)


def refit_from_seeds(engine: Any, run_id: str, estimator_class: Any) -> Any:
    """scikit-learn's own forest class refitted grove by grove from a run's manifest (its
    seeds and parameters, ``oob_score`` aside) on the stored training split, with its
    weights (``fit(X, y, sample_weight=w_train)``) when the run stored them (``data.weight``),
    the groves' trees concatenated: the reference a groveflow forest must equal."""
    manifest = json.loads(body(engine, keys.manifest(run_id)))
    X = stored_npy(engine, keys.split(run_id, "X_train"))
    y = stored_npy(engine, keys.split(run_id, "y_train"))
    weight_key = keys.split(run_id, "w_train")
    w = stored_npy(engine, weight_key) if has(engine, weight_key) else None
    params = {k: v for k, v in manifest["params"].items() if k != "oob_score"}
    reference = None
    for grove in manifest["groves"]:
        fitted = estimator_class(
            n_estimators=grove["n_trees"], random_state=grove["seed"], **params
        ).fit(X, y, sample_weight=w)
        if reference is None:
            reference = fitted
        else:
            reference.estimators_ += fitted.estimators_
    assert reference is not None
    reference.n_estimators = len(reference.estimators_)
    return reference

"""Build one grove: fit it on the cached training split and store it under its key."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from groveflow import artifact, storage, telemetry
from groveflow.documents import (
    GroveTask,
    RunRecord,
    grove_problem,
)
from groveflow.errors import (
    ArtifactError,
    GroveMismatch,
)
from groveflow.layout import keys
from groveflow.oob import (
    grove_oob,
    oob_bytes,
    wants_oob,
)
from groveflow.request import make_estimator
from groveflow.training._runs import _check_grove, _read_record, read_split, split_run
from groveflow.training._shards import grove_data, read_document

_TRAIN_CACHE: dict[
    tuple[str, str], tuple[RunRecord, np.ndarray, np.ndarray, np.ndarray | None]
] = {}
_SEEN: dict[tuple[str, str], dict[str, int]] = {}


def _training_split(
    bucket: str, run_id: str, seed: int
) -> tuple[RunRecord, np.ndarray, np.ndarray, np.ndarray | None, dict[str, int] | None]:
    """The run record and the grove's training rows with their weights (``data.weight``;
    None when the request names none), and how it saw them when the split is in row shards.
    The whole training split is cached across warm invocations of a builder; a grove's own
    sample (``rows_per_grove``) is not, each grove drawing another."""
    key = (bucket, run_id)
    if key in _TRAIN_CACHE:
        record, X, y, w = _TRAIN_CACHE[key]
        seen = _SEEN.get(key)  # the rows read by an earlier grove: this one read nothing
        return record, X, y, w, None if seen is None else {**seen, "shards": 0, "bytes_read": 0}
    record = _read_record(bucket, run_id)
    source = split_run(bucket, run_id)
    _TRAIN_CACHE.clear()  # before reading: a builder holds one run's rows at a time
    _SEEN.clear()
    w = None
    if record.data.shards is None:
        X = read_split(bucket, source, "X_train")
        y = read_split(bucket, source, "y_train")
        if weighted(record):
            w = read_split(bucket, source, WEIGHT_SPLIT)
        seen = None
    else:
        # The plan refuses data.weight for a split in row shards (their rows carry no weight).
        assert not weighted(record), "a weighted run's split is never in row shards"
        classes = record.classes_array()
        label_dtype = classes.dtype if classes is not None else np.dtype(np.float64)
        document = read_document(bucket, source)
        X, y, seen = grove_data(bucket, source, document, seed, label_dtype, classes=classes)
        if document.get("rows_per_grove") is not None:
            return record, X, y, None, seen
        _SEEN[key] = seen
    _TRAIN_CACHE[key] = (record, X, y, w)
    return record, X, y, w, seen


WEIGHT_SPLIT = "w_train"
"""The split holding the training rows' weights (float64), stored when ``data.weight`` is set."""


def weighted(record: RunRecord) -> bool:
    """Whether a run's groves fit with sample weights: its request names ``data.weight``."""
    return record.request["data"].get("weight") is not None


def build_grove(item: dict[str, Any], *, bucket: str) -> dict[str, Any]:
    """Fit one grove and store it under its deterministic key.

    A grove already stored with a matching checksum and seed is reused, so a
    retried or resumed grove never fits twice nor writes different bytes.

    Returns
    -------
    dict
        ``{"grove": int, "reused": bool}``: next to nothing, so thousands of
        results stay far below the state payload limit.
    """
    task = GroveTask.from_item(item)
    run_id, grove, seed, n_trees = task.run_id, task.grove, task.seed, task.n_trees
    key = keys.grove(run_id, grove)
    telemetry.logger.append_keys(run_id=run_id, grove=grove)
    if _stored_grove_ok(bucket, key, item):
        telemetry.logger.info("grove already stored and verified: reused")
        return {"grove": grove, "reused": True}
    record, X, y, w, seen = _training_split(bucket, run_id, seed)
    model = record.request["model"]
    classes = np.unique(y) if model["task"] == "classification" else None
    estimator = make_estimator(
        model["kind"], model["task"], model["params"], n_trees=n_trees, seed=seed, classes=classes
    )
    started = time.perf_counter()
    # scikit-learn's forest.fit(X, y, sample_weight): each tree's weights are these times its
    # bootstrap counts (times class_weight's), as in one forest of all the groves' trees.
    estimator.fit(X, y, sample_weight=w)
    fit_seconds = time.perf_counter() - started
    classes = estimator.classes_ if model["task"] == "classification" else None
    blob = artifact.encode_trees(estimator.estimators_, n_features=X.shape[1], classes=classes)
    metadata = {
        "sha256": storage.sha256_hex(blob),
        "seed": str(seed),
        "fit-seconds": f"{fit_seconds:.3f}",
        **_seen_metadata(seen),
    }
    if wants_oob(model["params"]):
        # Before the grove: a stored grove is what says the builder finished.
        sums, counts = grove_oob(estimator, X)
        storage.put_bytes(bucket, keys.grove_oob(run_id, grove), oob_bytes(sums, counts))
    storage.put_bytes(bucket, key, blob, metadata=metadata)
    telemetry.logger.info(
        "grove built", extra={"n_trees": n_trees, "fit_seconds": fit_seconds, "bytes": len(blob)}
    )
    telemetry.metrics.add_metric(
        name="GroveSeconds", unit=telemetry.MetricUnit.Seconds, value=fit_seconds
    )
    telemetry.metrics.add_metric(name="TreesBuilt", unit=telemetry.MetricUnit.Count, value=n_trees)
    return {"grove": grove, "reused": False}


def _seen_metadata(seen: dict[str, int] | None) -> dict[str, str]:
    """How the grove saw the data, as object metadata (``data-rows``, ``data-shards``...)."""
    return {} if seen is None else {f"data-{k.replace('_', '-')}": str(v) for k, v in seen.items()}


def _stored_grove_ok(bucket: str, key: str, item: dict[str, Any]) -> bool:
    """Whether a stored grove can be reused: it verifies as the merge will check it.

    Its checksum and seed, then its trees, features and classes against the run record,
    so a grove the merge would refuse (say, one of other classes) is rebuilt, not kept.
    """
    try:
        blob, metadata = storage.get_object(bucket, key)
    except FileNotFoundError:
        return False
    if grove_problem(blob, metadata, seed=int(item["seed"])) is not None:
        return False
    record = _run_record_of(bucket, item["run_id"])
    if wants_oob(record.request["model"]["params"]) and not storage.exists(
        bucket, keys.grove_oob(item["run_id"], item["grove"])
    ):
        return False
    try:
        _check_grove(artifact.decode_trees(blob), item, record)
    except (ArtifactError, GroveMismatch) as error:
        telemetry.logger.warning("stored grove not reusable: rebuilt", extra={"why": str(error)})
        return False
    return True


_RECORD_CACHE: dict[tuple[str, str], RunRecord] = {}


def _run_record_of(bucket: str, run_id: str) -> RunRecord:
    """The run record, read once per warm builder (a claimed record never changes): a
    resume that reuses thousands of groves reads it once per worker, not once per grove."""
    cached = _TRAIN_CACHE.get((bucket, run_id))
    if cached is not None:
        return cached[0]
    if (bucket, run_id) not in _RECORD_CACHE:
        _RECORD_CACHE.clear()
        _RECORD_CACHE[bucket, run_id] = _read_record(bucket, run_id)
    return _RECORD_CACHE[bucket, run_id]

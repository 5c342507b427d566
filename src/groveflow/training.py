"""The three stages of a training run: plan, build one grove, merge.

Each stage is what one Lambda handler calls. They share nothing but the bucket:
the plan writes the split and the grove plan, each grove builder writes one
grove object under a deterministic key, and the merge writes the forest and,
last, the manifest that makes the model exist.
"""

from __future__ import annotations

import hashlib
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from groveflow import artifact, storage, telemetry
from groveflow.datasets import Dataset, check_readable, load_dataset
from groveflow.documents import (
    MANIFEST_VERSION,
    DataRecord,
    ForestEntry,
    GroveRecord,
    GroveTask,
    ModelManifest,
    RunRecord,
    grove_problem,
)
from groveflow.encoding import Encoding
from groveflow.errors import (
    ArtifactError,
    DatasetTooLarge,
    GroveflowError,
    GroveMismatch,
    GroveMissing,
    InvalidDataset,
    InvalidPredictRequest,
    InvalidRequest,
)
from groveflow.estimates import check_budget, estimate_run
from groveflow.ids import ACCEPTED, is_valid_id
from groveflow.layout import grove_seeds, keys
from groveflow.metrics import classification_metrics, regression_metrics
from groveflow.oob import (
    OOBTotals,
    check_oob_coverage,
    grove_oob,
    oob_bytes,
    read_oob,
    wants_oob,
)
from groveflow.request import DataSpec, TrainRequest, make_estimator, parse_train_request

__all__ = ["MANIFEST_VERSION", "build_grove", "merge_run", "plan_run"]

SPLITS = ("X_train", "y_train", "X_test", "y_test")
PYTHON_BASELINE_MB = 200  # interpreter + numpy + scikit-learn, measured on python3.12


# --------------------------------------------------------------------------- plan


def plan_run(
    event: dict[str, Any],
    *,
    bucket: str,
    builder_memory_mb: int,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
    builder_reserved_concurrency: int | None = None,
) -> dict[str, Any]:
    """Validate the request, split the data once, and store the split and grove plan.

    Parameters
    ----------
    event : dict
        ``{"request": <execution input>, "execution_name": str, "converted": dict or None}``;
        ``converted`` names the columnar copies of CSV and Parquet data (:mod:`groveflow.ingest`).
    bucket : str
        The stack's bucket.
    builder_memory_mb : int
        Memory (in MB) of each grove builder, for the size guard.
    data_buckets : tuple of str, default=()
        Buckets besides ``bucket`` that datasets may be read from.
    local_paths : bool, default=False
        Whether datasets may be local paths (only on the local engine).
    builder_reserved_concurrency : int or None, default=None
        The builders' reserved concurrency, when the stack sets one: no more can run at
        once, so ``max_concurrency`` is clamped to it (more would only be throttled).

    Returns
    -------
    dict
        ``run_id``, ``bucket``, ``plan_key``, ``n_groves``, ``max_concurrency`` and
        ``tolerated_failure_percentage``: small, so it fits any state payload.
    """
    if event.get("grow") is not None:
        return _plan_round(event, bucket, builder_reserved_concurrency)
    started = time.perf_counter()
    request = parse_train_request(event.get("request"))
    readable = (bucket, *data_buckets)
    check_readable(request.data.uri, readable, local_paths)
    converted = event.get("converted") or {}
    run_id = request.run_id or _run_id_from(event.get("execution_name"))
    telemetry.logger.append_keys(run_id=run_id)
    stored = _stored_record(bucket, run_id)
    grown_from = _check_same_run(stored, request, run_id)
    resumed = stored is not None and all(
        storage.exists(bucket, keys.split(run_id, s)) for s in SPLITS
    )
    if resumed:
        assert stored is not None
        feature_names, encoding = stored.feature_names, stored.encoding
        run_estimate = stored.estimate
    else:
        dataset = load_dataset(
            _as_read(request.data, converted.get("data")),
            request.model.task,
            learn_rows=lambda y: _split_rows(y, request)[0],
        )
        split = _split(dataset, request)
        estimate_mb = _check_fits(
            split["X_train"], request, builder_memory_mb, y_train=split["y_train"]
        )
        # The trial grove refuses parameters that do not fit the data, and times the run.
        run_estimate = estimate_run(
            request,
            split["X_train"],
            split["y_train"],
            split["X_test"],
            builder_memory_mb=builder_memory_mb,
            concurrency=min(
                request.max_concurrency,
                request.n_groves,
                builder_reserved_concurrency or request.max_concurrency,
            ),
            plan_seconds=time.perf_counter() - started,
            ingested=converted.get("data") is not None,
        )
        check_oob_coverage(len(split["y_train"]), request.model.params, request.n_trees)
        check_budget(request, run_estimate)
        feature_names, encoding = dataset.feature_names, dataset.encoding
    # Everything is checked before anything is written: a refused run leaves nothing behind.
    predict = _predict_section(
        request,
        run_id,
        feature_names=feature_names,
        encoding=encoding,
        converted=converted.get("predict"),
        readable=readable,
        local_paths=local_paths,
    )
    if not resumed:
        record = _run_record(request, run_id, dataset, split)
        # The size guard's estimate, kept so a run's summary can set it beside the measured peak.
        _claim(
            bucket,
            run_id,
            request,
            {
                **record,
                "builder_estimate_mb": estimate_mb,
                "estimate": run_estimate.to_dict() if run_estimate else None,
            },
        )
        for name in SPLITS:
            storage.put_bytes(bucket, keys.split(run_id, name), storage.npy_bytes(split[name]))
    elif grown_from is not None:
        assert stored is not None
        grown = replace(stored, request=request.to_dict())
        storage.put_json(bucket, keys.request(run_id), grown.to_dict())
    plan = grove_plan(request, run_id)
    if grown_from is not None:
        plan = _groves_to_grow(bucket, run_id, plan, grown_from, request.grove_size)
    storage.put_json(bucket, keys.plan(run_id), plan)
    return {
        "run_id": run_id,
        "bucket": bucket,
        "plan_key": keys.plan(run_id),
        **_fan_out(request, plan, builder_reserved_concurrency),
        "tolerated_failure_percentage": request.tolerated_failure_percentage,
        "estimate": None if run_estimate is None else run_estimate.summary(),
        "predict": predict,
        # The columnar copy of CSV or Parquet rows to score, beside (not in) the request, so the
        # prediction is recognised as the same request whichever execution ingested it.
        "predict_converted": {"data": converted["predict"]} if converted.get("predict") else None,
    }


def _as_read(spec: DataSpec, converted: dict[str, Any] | None) -> DataSpec:
    """Where to read ``spec``'s data: its columnar copy when the run ingested it (CSV, Parquet)."""
    if converted is None:
        return spec
    return replace(spec, uri=converted["uri"], format=converted["format"])


def _predict_section(
    request: TrainRequest,
    run_id: str,
    *,
    feature_names: list[str],
    encoding: Encoding | None,
    converted: dict[str, Any] | None,
    readable: tuple[str, ...],
    local_paths: bool,
) -> dict[str, Any] | None:
    """Validate the run's predict section now, against the training columns, before any fan-out."""
    if request.predict is None:
        return None
    from groveflow.datasets import read_scoring_file, sources
    from groveflow.prediction import data_spec, parse_predict_request

    section = {"prediction_id": run_id, **request.predict, "model": run_id}
    try:
        predict = parse_predict_request(section)
    except GroveflowError as error:
        raise InvalidRequest(f"predict: {error}") from None
    check_readable(predict.data["uri"], readable, local_paths, InvalidPredictRequest)
    data = predict.data
    if converted is not None:
        data = {**predict.data, "uri": converted["uri"], "format": converted["format"]}
    spec = data_spec(data)
    for source in sources(spec.uri):
        read_scoring_file(source, spec, feature_names, predict.data.get("id_column"), encoding)
    return section


def _run_id_from(execution_name: Any) -> str:
    """The run id of a request without one: the execution's name, if the id rule accepts it."""
    if not isinstance(execution_name, str) or not execution_name:
        raise InvalidRequest("the request has no run_id and the execution has no name")
    if not is_valid_id(execution_name):
        raise InvalidRequest(
            f"the request has no run_id and the execution name {execution_name!r} is not an "
            f"accepted run id ({ACCEPTED}): give run_id in the input"
        )
    return execution_name


def _stored_record(bucket: str, run_id: str) -> RunRecord | None:
    try:
        return _read_record(bucket, run_id)
    except FileNotFoundError:
        return None


def _read_record(bucket: str, run_id: str) -> RunRecord:
    """The run's record, validated; FileNotFoundError if the run id is not claimed."""
    where = f"the run record s3://{bucket}/{keys.request(run_id)}"
    return RunRecord.from_dict(storage.get_json(bucket, keys.request(run_id)), where)


def _check_same_run(stored: RunRecord | None, request: TrainRequest, run_id: str) -> int | None:
    """Refuse a run id already used with different model inputs (the predict section aside).

    Returns the stored run's ``n_trees`` when the request grows it (the same inputs with
    more trees), else None.
    """
    if stored is None:
        return None
    before, now = _model_inputs(stored.request), _model_inputs(request.to_dict())
    if before == now:
        return None
    if {**before, "n_trees": now["n_trees"]} == now:
        if now["n_trees"] > before["n_trees"]:
            return int(before["n_trees"])
        raise InvalidRequest(
            f"run_id {run_id!r} has {before['n_trees']} trees; a forest grows but does not "
            f"shrink (n_trees={now['n_trees']}): give more trees, or a new run_id"
        )
    raise InvalidRequest(
        f"run_id {run_id!r} was already used with a different input; "
        "choose a new run_id or repeat the original input to resume (or the same input with "
        "a larger n_trees to grow it)"
    )


def _plan_round(
    event: dict[str, Any], bucket: str, builder_reserved_concurrency: int | None
) -> dict[str, Any]:
    """Plan the next round of an ``n_trees: "auto"`` run: its groves to grow, nothing else.

    ``event["grow"]`` is ``{"run_id", "n_trees", "from_n_trees"}`` (the round's target and
    the forest's trees so far), ``event["plan"]`` the run's first plan output, which this
    returns with the round's counts.
    """
    grow = event["grow"]
    record = _read_record(bucket, grow["run_id"])
    request = replace(parse_train_request(record.request), n_trees=int(grow["n_trees"]))
    run_id = record.run_id
    plan = _groves_to_grow(
        bucket, run_id, grove_plan(request, run_id), int(grow["from_n_trees"]), request.grove_size
    )
    storage.put_json(bucket, keys.plan(run_id), plan)
    return {**event["plan"], **_fan_out(request, plan, builder_reserved_concurrency)}


def _fan_out(
    request: TrainRequest, plan: list[dict[str, Any]], builder_reserved_concurrency: int | None
) -> dict[str, int]:
    """The Map's size and concurrency for ``plan``: ``max_concurrency`` clamped to the
    groves to build and to the builders' reserved concurrency (more would be throttled)."""
    return {
        "n_groves": len(plan),
        "n_trees": request.n_trees,
        "max_concurrency": min(
            request.max_concurrency,
            len(plan),
            builder_reserved_concurrency or request.max_concurrency,
        ),
    }


def grove_plan(request: TrainRequest, run_id: str) -> list[dict[str, Any]]:
    """Every grove of the run, in order: a pure function of the request, so the merge
    rebuilds it instead of trusting a stored list."""
    seeds = grove_seeds(request.seed, request.n_groves)
    return [
        GroveTask(run_id, i, seed, _grove_trees(request, i)).to_item()
        for i, seed in enumerate(seeds)
    ]


def _groves_to_grow(
    bucket: str, run_id: str, plan: list[dict[str, Any]], grown_from: int, grove_size: int
) -> list[dict[str, Any]]:
    """The groves a grown forest builds: every grove past the old forest's full groves (the
    last partial one changes size), and any earlier grove not stored. ``SeedSequence.spawn``
    is prefix-stable, so every kept grove has the seed a fresh run would give it."""
    kept = grown_from // grove_size
    stored = set(storage.list_keys(bucket, keys.groves_prefix(run_id)))
    return [
        item
        for item in plan
        if item["grove"] >= kept or keys.grove(run_id, item["grove"]) not in stored
    ]


def _claim(bucket: str, run_id: str, request: TrainRequest, record: dict[str, Any]) -> None:
    """Claim the run id: the run record is created only if no run holds the id yet.

    A conditional write, so of two runs started together with one id, exactly one
    claims it; the other is refused here, having written nothing. A run that finds its
    own record (a resume, or a twin with the same input) goes on, unless the data it
    read differs from the data the record was made from.
    """
    if storage.create_json(bucket, keys.request(run_id), record):
        return
    stored = _stored_record(bucket, run_id)
    grown_from = _check_same_run(stored, request, run_id)
    if stored is not None and stored.data.sha256 != record["data"]["sha256"]:
        raise InvalidRequest(
            f"run_id {run_id!r} was trained on other data (sha256 "
            f"{stored.data.sha256[:12]}..., now {record['data']['sha256'][:12]}...): "
            f"{request.data.uri} changed since; choose a new run_id"
        )
    if grown_from is not None:
        storage.put_json(bucket, keys.request(run_id), record)


def _model_inputs(request: dict[str, Any]) -> dict[str, Any]:
    """What decides a run's model: the request less its predict section and cost cap."""
    return {key: value for key, value in request.items() if key not in ("predict", "max_cost_usd")}


def _grove_trees(request: TrainRequest, grove: int) -> int:
    return min(request.grove_size, request.n_trees - grove * request.grove_size)


def _split(dataset: Dataset, request: TrainRequest) -> dict[str, np.ndarray]:
    train, test = _split_rows(dataset.y, request)
    return {
        "X_train": dataset.X[train],
        "y_train": dataset.y[train],
        "X_test": dataset.X[test],
        "y_test": dataset.y[test],
        "test_rows": test,
    }


def _split_rows(y: np.ndarray, request: TrainRequest) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out rows, sorted: chosen from the labels, seed and test_fraction
    alone, so an encoding can be learned from the training rows before the features exist."""
    from sklearn.model_selection import train_test_split

    n_rows = len(y)
    rows = np.arange(n_rows)
    if request.test_fraction == 0:
        train, test = rows, rows[:0]
    else:
        classification = request.model.task == "classification"
        stratify = y if classification else None
        n_test = int(np.ceil(request.test_fraction * n_rows))
        if classification:
            _, counts = np.unique(y, return_counts=True)
            if counts.min() < 2 or n_test < len(counts) or n_rows - n_test < len(counts):
                raise InvalidDataset(
                    f"too few rows for a stratified split: {n_rows} rows, {len(counts)} classes, "
                    f"smallest class has {counts.min()} rows, "
                    f"test_fraction={request.test_fraction}. "
                    "Every class needs 2+ rows; add data, lower test_fraction, or set it to 0"
                )
        elif n_test < 2 or n_rows - n_test < 2:
            raise InvalidDataset(
                f"too few rows ({n_rows}) for test_fraction={request.test_fraction}: "
                f"{n_test} held-out and {n_rows - n_test} training rows; regression needs "
                "at least 2 of each (R^2 is undefined on one row). Add data, raise "
                "test_fraction, or set it to 0 for no holdout"
            )
        train, test = train_test_split(
            rows,
            test_size=request.test_fraction,
            random_state=request.seed % 2**32,
            stratify=stratify,
        )
        train, test = np.sort(train), np.sort(test)
    if len(train) < 2:
        raise InvalidDataset(f"too few rows to train on: {len(train)}")
    return train, test


def estimate_grove_mb(n_rows: int, n_features: int, n_classes: int, request: TrainRequest) -> int:
    """Rough peak memory (in MB) of one grove builder.

    The cached split (float32 features), scikit-learn's per-tree working set
    (sample weights, indices and sort buffers, about 40 bytes a row) and the
    fitted trees (at most ``2 * n_rows / min_samples_leaf`` nodes each, at about
    64 bytes plus 8 bytes per class value).
    """
    leaf = request.model.params.get("min_samples_leaf", 1)
    min_leaf = leaf if isinstance(leaf, int) else max(1, int(leaf * n_rows))
    nodes = 2 * n_rows / min_leaf
    tree_bytes = nodes * (64 + 8 * max(n_classes, 1))
    total = 2 * n_rows * n_features * 4 + 40 * n_rows + request.grove_size * tree_bytes
    return PYTHON_BASELINE_MB + int(np.ceil(total / 2**20))


def _check_fits(
    X_train: np.ndarray, request: TrainRequest, memory_mb: int, y_train: np.ndarray | None = None
) -> int:
    """Refuse a grove too big for the builder's ``memory_mb``, with the memory it would need;
    the estimate (MB, :func:`estimate_grove_mb`) of one that fits.

    Classification counts the training split's classes (each node of each tree stores a
    value per class); ``y_train`` None, the call of an older plan, counts two.
    """
    n_classes = 1 if request.model.task == "regression" else 2
    if y_train is not None and request.model.task == "classification":
        n_classes = len(np.unique(y_train))
    needed = estimate_grove_mb(X_train.shape[0], X_train.shape[1], n_classes, request)
    if needed > memory_mb:
        suggestion = min(10240, int(np.ceil(needed * 1.2 / 64)) * 64)
        hint = (
            f"set the grove builder's memory to {suggestion} MB (the BuilderMemorySize "
            "parameter; above 3,008 MB only where the account allows it, see docs/deploy.md)"
            if suggestion < 10240
            else "Lambda's 10,240 MB ceiling is not enough: sample the data or lower grove_size"
        )
        raise DatasetTooLarge(
            f"a grove of {request.grove_size} trees on "
            f"{X_train.shape[0]} x {X_train.shape[1]} rows "
            f"needs about {needed} MB, more than the builder's {memory_mb} MB; {hint}"
        )
    return needed


def _sha256_of(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(storage.npy_bytes(np.ascontiguousarray(array)))
    return digest.hexdigest()


def _run_record(
    request: TrainRequest, run_id: str, dataset: Dataset, split: dict[str, np.ndarray]
) -> dict[str, Any]:
    classes = np.unique(dataset.y) if request.model.task == "classification" else None
    record = RunRecord(
        run_id=run_id,
        request=request.to_dict(),
        feature_names=dataset.feature_names,
        classes=classes.tolist() if classes is not None else None,
        classes_dtype=classes.dtype.str if classes is not None else None,
        data=DataRecord(
            uri=request.data.uri,
            sha256=_sha256_of(dataset.X, dataset.y),
            n_rows=len(dataset.y),
            n_features=dataset.X.shape[1],
            n_train=len(split["y_train"]),
            n_test=len(split["y_test"]),
            test_rows_sha256=_sha256_of(split["test_rows"].astype(np.int64)),
        ),
        encoding=dataset.encoding,
    )
    return record.to_dict()


# --------------------------------------------------------------------------- grove

GROVE_READERS = 32
"""Groves the merge fetches and verifies at once: as many as the S3 client's connection pool
holds (``max_pool_connections=64`` in :mod:`groveflow.storage`). On AWS each reader waits
on S3's latency, so more readers divide the merge's time by as many."""

_TRAIN_CACHE: dict[tuple[str, str], tuple[RunRecord, np.ndarray, np.ndarray]] = {}


def _training_split(bucket: str, run_id: str) -> tuple[RunRecord, np.ndarray, np.ndarray]:
    """The run record and training split, cached across warm invocations of a builder."""
    key = (bucket, run_id)
    if key not in _TRAIN_CACHE:
        record = _read_record(bucket, run_id)
        source = split_run(bucket, run_id)
        X = storage.read_npy(storage.get_bytes(bucket, keys.split(source, "X_train")))
        y = storage.read_npy(storage.get_bytes(bucket, keys.split(source, "y_train")))
        _TRAIN_CACHE.clear()
        _TRAIN_CACHE[key] = (record, X, y)
    return _TRAIN_CACHE[key]


def split_run(bucket: str, run_id: str) -> str:
    """The run whose split ``run_id`` trains on: the one its ``data/source.json`` names (a
    search's candidates share the search's split), else its own."""
    try:
        source = storage.get_json(bucket, keys.split_source(run_id))
    except FileNotFoundError:
        return run_id
    if not isinstance(source, dict) or not is_valid_id(source.get("run_id")):
        raise ArtifactError(f"{keys.split_source(run_id)} does not name a run: {source!r}")
    return str(source["run_id"])


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
    record, X, y = _training_split(bucket, run_id)
    model = record.request["model"]
    classes = np.unique(y) if model["task"] == "classification" else None
    estimator = make_estimator(
        model["kind"], model["task"], model["params"], n_trees=n_trees, seed=seed, classes=classes
    )
    started = time.perf_counter()
    estimator.fit(X, y)
    fit_seconds = time.perf_counter() - started
    classes = estimator.classes_ if model["task"] == "classification" else None
    blob = artifact.encode_trees(estimator.estimators_, n_features=X.shape[1], classes=classes)
    metadata = {
        "sha256": storage.sha256_hex(blob),
        "seed": str(seed),
        "fit-seconds": f"{fit_seconds:.3f}",
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


# --------------------------------------------------------------------------- merge


@dataclass
class _Groves:
    forests: list[artifact.Forest]
    records: list[dict[str, Any]]
    missing: list[int]


def _collect_groves(
    bucket: str, run_id: str, plan: list[dict[str, Any]], record: RunRecord
) -> _Groves:
    expected = {keys.grove(run_id, p["grove"]) for p in plan}
    if wants_oob(record.request["model"]["params"]):
        expected |= {keys.grove_oob(run_id, p["grove"]) for p in plan}
    groves = _Groves([], [], [])
    # Groves are fetched and verified GROVE_READERS at a time (S3 latency, not bandwidth,
    # bounds one reader), and kept in plan order; the prefix is listed for strays meanwhile
    # (ten pages for 10,000 groves), and the first error cancels the reads not yet started.
    pool = ThreadPoolExecutor(GROVE_READERS)
    try:
        listed = pool.submit(storage.list_keys, bucket, keys.groves_prefix(run_id))
        read = pool.map(lambda item: _read_grove(bucket, run_id, item, record), plan)
        strays = [k for k in listed.result() if k not in expected]
        if strays:
            raise GroveMismatch(
                f"objects under the run's groves/ prefix that the plan does not name: {strays[:5]}"
            )
        for item, grove in zip(plan, read, strict=True):
            if grove is None:
                groves.missing.append(item["grove"])
            else:
                groves.forests.append(grove[0])
                groves.records.append(grove[1])
    finally:
        pool.shutdown(cancel_futures=True)
    return groves


def _read_grove(
    bucket: str, run_id: str, item: dict[str, Any], record: RunRecord
) -> tuple[artifact.Forest, dict[str, Any]] | None:
    """One planned grove, verified, with its manifest record; None if it is not stored."""
    key = keys.grove(run_id, item["grove"])
    try:
        blob, metadata = storage.get_object(bucket, key)
    except FileNotFoundError:
        return None
    problem = grove_problem(blob, metadata, seed=item["seed"])
    if problem is not None:
        raise GroveMismatch(
            f"grove {item['grove']} ({key}) does not match its checksum or seed: {problem}"
        )
    checksum = metadata["sha256"]
    try:
        grove = artifact.decode_trees(blob)
    except ArtifactError as error:
        message = f"grove {item['grove']} ({key}) is not a valid grove: {error}"
        raise GroveMismatch(message) from None
    _check_grove(grove, item, record)
    seconds = float(metadata["fit-seconds"]) if "fit-seconds" in metadata else None
    return grove, {**item, "sha256": checksum, "fit_seconds": seconds}


def _check_grove(grove: artifact.Forest, item: dict[str, Any], record: RunRecord) -> None:
    number = item["grove"]
    if grove.n_trees != item["n_trees"]:
        raise GroveMismatch(
            f"grove {number} has {grove.n_trees} trees; the plan says {item['n_trees']}"
        )
    if grove.n_features_in_ != record.data.n_features:
        raise GroveMismatch(
            f"grove {number} has {grove.n_features_in_} features; "
            f"the data has {record.data.n_features}"
        )
    classes = None if grove.classes_ is None else grove.classes_.tolist()
    if classes != record.classes:
        raise GroveMismatch(f"grove {number} has classes {classes}; the data has {record.classes}")


def merge_run(event: dict[str, Any], *, bucket: str) -> dict[str, Any]:
    """Check every planned grove, merge them, evaluate on the held-out split, store the model.

    The forest is written first and the manifest last: a model exists only
    once its manifest does, so a merge that dies midway leaves no model.

    Raises
    ------
    GroveMissing
        If more groves are missing than ``tolerated_failure_percentage`` allows.
    GroveMismatch
        If a stored grove fails its checksum or does not match the plan.
    """
    started = time.perf_counter()
    run_id = event["run_id"]
    telemetry.logger.append_keys(run_id=run_id)
    record = _read_record(bucket, run_id)
    request = parse_train_request(record.request)
    if event.get("n_trees") is not None:  # the round of an n_trees="auto" run
        request = replace(request, n_trees=int(event["n_trees"]))
    plan = grove_plan(request, run_id)
    groves = _collect_groves(bucket, run_id, plan, record)
    allowed = request.tolerated_failure_percentage
    if groves.missing and (100 * len(groves.missing) / len(plan) > allowed or not groves.forests):
        raise GroveMissing(
            f"{len(groves.missing)} of {len(plan)} groves were not built (groves "
            f"{groves.missing[:10]}); tolerated_failure_percentage={allowed:g}"
        )
    forest = artifact.Forest.concat(groves.forests)
    # The forest is encoded and stored while it is evaluated (the manifest still comes last).
    with ThreadPoolExecutor(1) as pool:
        stored = pool.submit(_store_forest, bucket, run_id, forest)
        holdout = _evaluate(forest, bucket, run_id, request)
        blob = stored.result()
    trees_built = sum(r["n_trees"] for r in groves.records)
    out_of_bag = (
        _out_of_bag(bucket, run_id, record, groves.records, trees_built)
        if wants_oob(request.model.params)
        else None
    )
    manifest = ModelManifest(
        run_id=run_id,
        task=request.model.task,
        kind=request.model.kind,
        params=request.model.params,
        classes=record.classes,
        classes_dtype=record.classes_dtype,
        feature_names=record.feature_names,
        n_features=record.data.n_features,
        trees_requested=request.n_trees,
        trees_built=trees_built,
        groves=[GroveRecord(**r) for r in groves.records],
        groves_missing=groves.missing,
        forest=ForestEntry("forest.gfa", storage.sha256_hex(blob), len(blob)),
        data=record.data,
        seed=request.seed,
        metrics=holdout,
        versions=_versions(),
        format_version=artifact.FORMAT_VERSION,
        encoding=record.encoding,
        oob=out_of_bag,
        auto=_next_round(bucket, run_id, request, out_of_bag),
        search=_search_of(bucket, event.get("search_id")),
    )
    storage.put_json(bucket, keys.manifest(run_id), manifest.to_dict())
    merge_seconds = time.perf_counter() - started
    telemetry.logger.info("model stored", extra={"trees_built": trees_built, "metrics": holdout})
    telemetry.metrics.add_metric(
        name="ForestTrees", unit=telemetry.MetricUnit.Count, value=trees_built
    )
    telemetry.metrics.add_metric(
        name="MergeSeconds", unit=telemetry.MetricUnit.Seconds, value=merge_seconds
    )
    return {
        "run_id": run_id,
        "model_uri": f"s3://{bucket}/{keys.manifest(run_id)}",
        "trees_requested": request.n_trees,
        "trees_built": trees_built,
        "groves_built": len(groves.records),
        "groves_missing": len(groves.missing),
        "metrics": holdout,
        "oob": None if out_of_bag is None else out_of_bag["metrics"],
        "next_n_trees": manifest.auto["next_n_trees"] if manifest.auto else None,
        "merge_seconds": round(merge_seconds, 3),
        **({"search": manifest.search} if manifest.search else {}),
    }


def _search_of(bucket: str, search_id: Any) -> dict[str, Any] | None:
    """A search's leaderboard, for its winner's manifest (None for a plain run)."""
    if search_id is None:
        return None
    from groveflow.tuning import leaderboard

    return leaderboard(bucket, str(search_id))


def _next_round(
    bucket: str, run_id: str, request: TrainRequest, out_of_bag: dict[str, Any] | None
) -> dict[str, Any] | None:
    """For ``n_trees: "auto"``: the rounds so far with their OOB scores, and the next round's
    ``n_trees`` (None once the score improved by less than the tolerance, or at max_trees,
    with the reason in ``stopped``). Earlier rounds are read from the model's last manifest."""
    auto = request.auto
    if auto is None or out_of_bag is None:
        return None
    rounds: list[dict[str, Any]] = []
    try:
        previous = ModelManifest.from_dict(
            storage.get_json(bucket, keys.manifest(run_id)), f"of run {run_id}"
        )
    except (FileNotFoundError, ArtifactError):
        previous = None
    if previous is not None and previous.auto and previous.trees_requested < request.n_trees:
        rounds = list(previous.auto["rounds"])
    score = out_of_bag["metrics"]["oob_score"]
    rounds.append({"n_trees": request.n_trees, "oob_score": score})
    stopped = None
    if request.n_trees >= auto.max_trees:
        stopped = f"max_trees={auto.max_trees} reached"
    elif len(rounds) > 1 and score - rounds[-2]["oob_score"] < auto.oob_tolerance:
        gain = score - rounds[-2]["oob_score"]
        added = request.n_trees - rounds[-2]["n_trees"]
        stopped = (
            f"the OOB score changed by {gain:+.6f} over the last {added} trees, less than "
            f"oob_tolerance={auto.oob_tolerance:g}"
        )
    following = min(request.n_trees + auto.round_trees, auto.max_trees)
    return {
        "rounds": rounds,
        "stopped": stopped,
        "next_n_trees": None if stopped else following,
        **asdict(auto),
    }


def _out_of_bag(
    bucket: str, run_id: str, record: RunRecord, groves: list[dict[str, Any]], n_trees: int
) -> dict[str, Any]:
    """The forest's OOB metrics, curve and decision function, from the groves' OOB sums.

    The sums are read ``GROVE_READERS`` at a time and added in grove order; the decision
    function (``oob_decision_function_``, or ``oob_prediction_`` for regression) is stored
    beside the forest as ``oob.npy``.
    """
    source = split_run(bucket, run_id)
    y_train = storage.read_npy(storage.get_bytes(bucket, keys.split(source, "y_train")))
    classes = record.classes_array()
    width = 1 if classes is None else len(classes)

    def read(grove: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray]:
        key = keys.grove_oob(run_id, grove["grove"])
        try:
            sums, counts = read_oob(storage.get_bytes(bucket, key), len(y_train), width)
        except FileNotFoundError:
            raise GroveMissing(f"grove {grove['grove']} has no OOB sums ({key})") from None
        except (ValueError, OSError) as error:
            raise GroveMismatch(f"grove {grove['grove']}'s OOB sums ({key}): {error}") from None
        return grove["n_trees"], sums, counts

    totals = OOBTotals(y_train=y_train, classes=classes)
    with ThreadPoolExecutor(GROVE_READERS) as pool:
        curve = totals.add_all(pool.map(read, groves), n_trees)
    decision = storage.npy_bytes(np.ascontiguousarray(totals.decision()))
    storage.put_bytes(bucket, keys.oob_decision(run_id), decision)
    return {
        "metrics": totals.metrics(),
        "curve": curve,
        "decision": {"key": "oob.npy", "sha256": storage.sha256_hex(decision)},
    }


def _store_forest(bucket: str, run_id: str, forest: artifact.Forest) -> bytes:
    blob = artifact.encode_forest_file(forest)
    storage.put_bytes(bucket, keys.forest(run_id), blob)
    return blob


def _evaluate(
    forest: artifact.Forest, bucket: str, run_id: str, request: TrainRequest
) -> dict[str, Any]:
    source = split_run(bucket, run_id)
    X_test = storage.read_npy(storage.get_bytes(bucket, keys.split(source, "X_test")))
    y_test = storage.read_npy(storage.get_bytes(bucket, keys.split(source, "y_test")))
    if len(y_test) == 0:
        return {"n_test": 0, "note": "test_fraction=0: no held-out rows, no metrics"}
    forest.n_jobs = -1  # every vCPU the merge has; the answers are the same for any thread count
    if request.model.task == "classification":
        assert forest.classes_ is not None
        scores = classification_metrics(y_test, forest.predict_proba(X_test), forest.classes_)
    else:
        scores = regression_metrics(y_test, forest.predict(X_test))
    return {"n_test": len(y_test), **scores}


def _versions() -> dict[str, str]:
    import sklearn

    import groveflow

    return {
        "groveflow": groveflow.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }

"""Merge: check every planned grove, merge them, evaluate, write the manifest last."""

from __future__ import annotations

import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from groveflow import artifact, storage, telemetry
from groveflow.documents import (
    FORMAT_VERSION,
    ForestEntry,
    GroveRecord,
    ModelManifest,
    RunRecord,
    check_search,
    grove_problem,
    leaderboard,
)
from groveflow.errors import (
    ArtifactError,
    GroveMismatch,
    GroveMissing,
)
from groveflow.estimates import GROVE_READERS
from groveflow.layout import keys
from groveflow.metrics import classification_metrics, regression_metrics
from groveflow.oob import (
    OOBTotals,
    read_oob,
    wants_oob,
)
from groveflow.request import TrainRequest, parse_train_request
from groveflow.training._runs import (
    _check_grove,
    _read_record,
    grove_plan,
    read_split,
    split_run,
)
from groveflow.training._shards import read_document, test_shards

# --------------------------------------------------------------------------- merge


@dataclass
class _Groves:
    forests: list[artifact.Forest]
    records: list[dict[str, Any]]
    missing: list[int]


def _collect_groves(
    bucket: str,
    run_id: str,
    plan: list[dict[str, Any]],
    record: RunRecord,
    known: list[dict[str, Any]],
) -> _Groves:
    """The plan's groves, verified, in plan order; any object under the run's groves/
    prefix that ``known`` (the plan, or for ``n_trees="auto"`` every round's) does not
    name is refused as a stray."""
    expected = {keys.grove(run_id, p["grove"]) for p in known}
    if wants_oob(record.request["model"]["params"]):
        expected |= {keys.grove_oob(run_id, p["grove"]) for p in known}
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
    seen = {
        name: int(metadata[f"data-{name.replace('_', '-')}"])
        for name in ("rows", "shards", "bytes_read")
        if f"data-{name.replace('_', '-')}" in metadata
    }
    return grove, {**item, "sha256": checksum, "fit_seconds": seconds, "data": seen or None}


def merge_run(event: dict[str, Any], *, bucket: str) -> dict[str, Any]:
    """Check every planned grove, merge them, evaluate on the held-out split, store the model.

    The forest is written first and the manifest last: a model exists only
    once its manifest does, so a merge that dies midway leaves no model.

    ``event``: ``{"run_id", "n_trees", "plan"}``, ``plan`` the plan's output (its
    ``fan_out``, the Map's concurrency and why it was clamped, is passed on to the summary).

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
    groves = _planned_groves(bucket, run_id, request, record)
    forest = artifact.Forest.concat(groves.forests)
    previous = _stored_manifest(bucket, run_id)
    # The forest is encoded while it is evaluated; the model's files are stored only once the
    # evaluation and the OOB scores (the merge's peak memory) are done, then the manifest: a
    # merge that runs out of memory leaves the model directory as it was.
    with ThreadPoolExecutor(1) as pool:
        encoded = pool.submit(_encode_forest, forest, previous)
        holdout = _evaluate(forest, bucket, run_id, request, record)
        blob, forest_name = encoded.result()
    trees_built = sum(r["n_trees"] for r in groves.records)
    out_of_bag, decision = (
        _out_of_bag(bucket, run_id, record, groves.records, trees_built, previous=previous)
        if wants_oob(request.model.params)
        else (None, b"")
    )
    if out_of_bag is not None:  # the model's files first, the manifest last
        storage.put_bytes(bucket, keys.model_file(run_id, out_of_bag["decision"]["key"]), decision)
    storage.put_bytes(bucket, keys.model_file(run_id, forest_name), blob)
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
        forest=ForestEntry(forest_name, storage.sha256_hex(blob), len(blob)),
        data=record.data,
        seed=request.seed,
        metrics=holdout,
        versions=_versions(),
        format_version=FORMAT_VERSION,
        encoding=record.encoding,
        oob=out_of_bag,
        auto=_next_round(previous, request, out_of_bag),
        search=_search_of(bucket, event.get("search_id")),
    )
    storage.put_json(bucket, keys.manifest(run_id), manifest.to_dict())
    _delete_replaced(bucket, run_id, previous, manifest)
    merge_seconds = time.perf_counter() - started
    _log_merge(trees_built, holdout, merge_seconds)
    return {
        **_merge_output(bucket, manifest, record, groves, merge_seconds),
        # the plan's account of the Map's concurrency (clamped or not, and why), for the summary
        **({"fan_out": event["plan"]["fan_out"]} if "fan_out" in event.get("plan", {}) else {}),
    }


def _planned_groves(bucket: str, run_id: str, request: TrainRequest, record: RunRecord) -> _Groves:
    """The plan's groves, checked, or :class:`GroveMissing` if more are missing than
    ``tolerated_failure_percentage`` allows (or all are)."""
    plan = grove_plan(request, run_id)
    # An n_trees="auto" run resumed (or re-run) from its first round finds later rounds'
    # groves stored: they are its own, reused as the rounds replay.
    known = (
        grove_plan(replace(request, n_trees=request.auto.max_trees), run_id)
        if request.auto
        else plan
    )
    groves = _collect_groves(bucket, run_id, plan, record, known)
    allowed = request.tolerated_failure_percentage
    if groves.missing and (100 * len(groves.missing) / len(plan) > allowed or not groves.forests):
        raise GroveMissing(
            f"{len(groves.missing)} of {len(plan)} groves were not built (groves "
            f"{groves.missing[:10]}); tolerated_failure_percentage={allowed:g}"
        )
    return groves


def _log_merge(trees_built: int, holdout: dict[str, Any], merge_seconds: float) -> None:
    telemetry.logger.info("model stored", extra={"trees_built": trees_built, "metrics": holdout})
    telemetry.metrics.add_metric(
        name="ForestTrees", unit=telemetry.MetricUnit.Count, value=trees_built
    )
    telemetry.metrics.add_metric(
        name="MergeSeconds", unit=telemetry.MetricUnit.Seconds, value=merge_seconds
    )


def _merge_output(
    bucket: str, manifest: ModelManifest, record: RunRecord, groves: _Groves, seconds: float
) -> dict[str, Any]:
    """The Merge step's output: the model, its figures and what the next round needs."""
    return {
        "run_id": manifest.run_id,
        "model_uri": f"s3://{bucket}/{keys.manifest(manifest.run_id)}",
        "trees_requested": manifest.trees_requested,
        "trees_built": manifest.trees_built,
        "groves_built": len(groves.records),
        "groves_missing": len(groves.missing),
        "metrics": manifest.metrics,
        "oob": None if manifest.oob is None else manifest.oob["metrics"],
        "next_n_trees": manifest.auto["next_n_trees"] if manifest.auto else None,
        "merge_seconds": round(seconds, 3),
        **({"search": manifest.search} if manifest.search else {}),
        **({"data": _data_seen(record, groves.records)} if record.data.shards else {}),
    }


def _data_seen(record: RunRecord, groves: list[dict[str, Any]]) -> dict[str, Any]:
    """How the groves saw a split in row shards: the rule, and the most rows, shards and
    bytes one grove read (groves reused from an earlier run may not say)."""
    shards = record.data.shards or {}
    seen = [g["data"] for g in groves if g.get("data")]
    most = {k: max((s[k] for s in seen), default=None) for k in ("rows", "shards", "bytes_read")}
    return {
        "rule": shards.get("rule"),
        "why": shards.get("why"),
        "rows_per_grove": shards.get("rows_per_grove"),
        "n_train": record.data.n_train,
        "grove_rows": most["rows"],
        "grove_shards": most["shards"],
        "grove_bytes_read": most["bytes_read"],
    }


def _search_of(bucket: str, search_id: Any) -> dict[str, Any] | None:
    """A search's leaderboard, for its winner's manifest (None for a plain run)."""
    if search_id is None:
        return None
    key = keys.search(str(search_id))
    document = check_search(storage.get_json(bucket, key), f"s3://{bucket}/{key}")
    return leaderboard(str(search_id), document)


def _stored_manifest(bucket: str, run_id: str) -> ModelManifest | None:
    """The run's model manifest from an earlier merge (a grown forest, a round of
    ``n_trees="auto"``, a repeated run), if any."""
    try:
        return ModelManifest.from_dict(
            storage.get_json(bucket, keys.manifest(run_id)), f"of run {run_id}"
        )
    except (FileNotFoundError, ArtifactError):
        return None


def _model_file(
    previous: ModelManifest | None, previous_entry: dict[str, Any] | None, name: str, data: bytes
) -> str:
    """The name a model file is stored under: ``name`` for a run's first model; once a model
    exists, the one it already has for the same bytes, or a new name from their sha256, so
    the stored model stays whole (its manifest's files untouched) until the new manifest."""
    if previous is None:
        return name
    digest = storage.sha256_hex(data)
    if previous_entry is not None and previous_entry.get("sha256") == digest:
        return str(previous_entry["key"])
    return keys.model_file_name(name, digest)


def _delete_replaced(
    bucket: str, run_id: str, previous: ModelManifest | None, manifest: ModelManifest
) -> None:
    """Once the new manifest is stored: delete the files of the model it replaced."""
    if previous is None:
        return
    old = {previous.forest.key, *([previous.oob["decision"]["key"]] if previous.oob else [])}
    new = {manifest.forest.key, *([manifest.oob["decision"]["key"]] if manifest.oob else [])}
    for name in sorted(old - new):
        try:
            storage.delete(bucket, f"{keys.model_prefix(run_id)}{name}")
        except Exception as error:  # the model is already committed: a leftover file only
            telemetry.logger.warning(
                "replaced model file not deleted", extra={"file": name, "why": str(error)}
            )


def _next_round(
    previous: ModelManifest | None, request: TrainRequest, out_of_bag: dict[str, Any] | None
) -> dict[str, Any] | None:
    """For ``n_trees: "auto"``: the rounds so far with their OOB scores, and the next round's
    ``n_trees`` (None once the score improved by less than the tolerance, or at max_trees,
    with the reason in ``stopped``). Earlier rounds are read from the model's last manifest."""
    auto = request.auto
    if auto is None or out_of_bag is None:
        return None
    rounds: list[dict[str, Any]] = []
    if previous is not None and previous.auto:  # earlier rounds (a replayed round replaces its own)
        rounds = [r for r in previous.auto["rounds"] if r["n_trees"] < request.n_trees]
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
    bucket: str,
    run_id: str,
    record: RunRecord,
    groves: list[dict[str, Any]],
    n_trees: int,
    *,
    previous: ModelManifest | None,
) -> tuple[dict[str, Any], bytes]:
    """The forest's OOB metrics, curve and decision function, from the groves' OOB sums;
    and the decision function's bytes, which the merge stores beside the forest.

    The sums are read ``GROVE_READERS`` at a time and added in grove order; the decision
    function (``oob_decision_function_``, or ``oob_prediction_`` for regression) is named
    ``oob.npy`` (by its sha256 once the run has a model).
    """
    source = split_run(bucket, run_id)
    y_train = read_split(bucket, source, "y_train")
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
    entry = previous.oob["decision"] if previous is not None and previous.oob else None
    name = _model_file(previous, entry, keys.OOB_DECISION, decision)
    summary = {
        "metrics": totals.metrics(),
        "curve": curve,
        "decision": {"key": name, "sha256": storage.sha256_hex(decision)},
    }
    return summary, decision


def _encode_forest(forest: artifact.Forest, previous: ModelManifest | None) -> tuple[bytes, str]:
    """The forest's file and the name it is stored under (:func:`_model_file`)."""
    blob = artifact.encode_forest_file(forest)
    entry = (
        None if previous is None else {"key": previous.forest.key, "sha256": previous.forest.sha256}
    )
    return blob, _model_file(previous, entry, keys.FOREST, blob)


def _evaluate(
    forest: artifact.Forest, bucket: str, run_id: str, request: TrainRequest, record: RunRecord
) -> dict[str, Any]:
    """The holdout metrics. A split in row shards is scored a shard at a time (the
    predictions kept, not the rows): the same predictions, so the same metrics."""
    source = split_run(bucket, run_id)
    if record.data.shards is None:
        held: Any = [(read_split(bucket, source, "X_test"), read_split(bucket, source, "y_test"))]
    else:
        held = test_shards(bucket, read_document(bucket, source))
    forest.n_jobs = -1  # every vCPU the merge has; the answers are the same for any thread count
    classification = request.model.task == "classification"
    predicted, labels = [], []
    for X_test, y_test in held:
        if len(y_test) == 0:
            continue
        predicted.append(forest.predict_proba(X_test) if classification else forest.predict(X_test))
        labels.append(y_test)
        del X_test
    y_test = np.concatenate(labels) if labels else np.empty(0)
    if len(y_test) == 0:
        return {"n_test": 0, "note": "test_fraction=0: no held-out rows, no metrics"}
    scores_of = np.concatenate(predicted)
    if classification:
        assert forest.classes_ is not None
        scores = classification_metrics(y_test, scores_of, forest.classes_)
    else:
        scores = regression_metrics(y_test, scores_of)
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

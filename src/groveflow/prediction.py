"""Distributed prediction: plan shards of a dataset, score each shard, record the parts.

Used by the predict state machine (an existing model) and by a training run's
optional ``predict`` section. Row order and identity are preserved: shards
never cross files, files are taken in :func:`groveflow.datasets.sources`
order, and every output row carries its global 0-based ``row`` index (and the
user's id column when one is named).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from groveflow import storage, telemetry
from groveflow.datasets import check_readable, part_source, read_scoring_file, sources
from groveflow.documents import GroveRecord, ModelManifest, PredictJob, ShardTask, grove_problem
from groveflow.encoding import Encoding
from groveflow.errors import ArtifactError, InvalidPredictRequest, ModelNotFound, ShardMissing
from groveflow.fan_out import fan_out_concurrency
from groveflow.ids import check_id
from groveflow.layout import keys, model_manifest
from groveflow.request import (
    MAX_SHARDS,
    PredictRequest,
    data_spec,
    parse_predict_request,
)

if TYPE_CHECKING:  # imported where used: scikit-learn takes a second to import, and a
    from groveflow import artifact  # request's parse (the CLI's check before a run) needs none

__all__ = [
    "PredictRequest",
    "data_spec",
    "finish_predictions",
    "parse_predict_request",
    "plan_predict_run",
    "plan_predictions",
    "score_shard",
]


def _manifest_location(model: str, bucket: str) -> tuple[str, str]:
    """Bucket and key of the model manifest a request names (:func:`layout.model_manifest`)."""
    location = model_manifest(model, bucket)
    if location is None:
        raise InvalidPredictRequest(f"model={model!r}: give s3://.../manifest.json or a run id")
    return location


def load_manifest(model: str, bucket: str) -> tuple[str, str, ModelManifest]:
    """The model's bucket, manifest key and manifest.

    Raises
    ------
    InvalidPredictRequest
        If the model is outside the stack's bucket (checked before anything is read).
    ModelNotFound
        If no manifest exists there.
    ArtifactError
        If the manifest is not a model manifest (truncated, damaged), naming the object.
    """
    model_bucket, key = _manifest_location(model, bucket)
    if model_bucket != bucket:
        raise InvalidPredictRequest(
            f"model {model} is outside the stack's bucket {bucket}; copy it there"
        )
    try:
        raw = storage.get_bytes(model_bucket, key)
    except FileNotFoundError:
        raise ModelNotFound(
            f"no model manifest at s3://{model_bucket}/{key}: the run did not finish, "
            "or the model id is wrong"
        ) from None
    return (
        model_bucket,
        key,
        ModelManifest.from_json(raw, f"s3://{model_bucket}/{key}"),
    )


def verify_model(
    bucket: str, manifest_key: str, manifest: ModelManifest, *, by_grove: bool = False
) -> None:
    """Check the stored forest (or each grove) against the manifest's checksums.

    Done once, before any shard runs, so a damaged model fails the plan by name
    instead of failing every shard. Groves are read one at a time: a forest too big
    for one Lambda is verified in the memory of one grove.

    Raises
    ------
    ArtifactError
        Naming the object that is missing or differs from the manifest.
    """
    if by_grove:
        for grove in manifest.groves:
            _verified_grove(bucket, grove)
        return
    forest = manifest.forest
    key = keys.beside(manifest_key, forest.key)
    try:
        blob = storage.get_bytes(bucket, key)
    except FileNotFoundError:
        raise ArtifactError(f"the model's forest s3://{bucket}/{key} is missing") from None
    if storage.sha256_hex(blob) != forest.sha256:
        raise ArtifactError(
            f"the model's forest s3://{bucket}/{key} differs from its manifest's sha256 "
            f"({len(blob)} bytes, the manifest says {forest.bytes}): damaged or replaced; "
            "retrain the run"
        )


def plan_predictions(
    request: PredictRequest,
    *,
    bucket: str,
    prediction_id: str,
    feature_names: list[str],
    model_manifest_uri: str,
    fingerprint: dict[str, Any] | None = None,
    encoding: Encoding | None = None,
) -> dict[str, Any]:
    """Check every input file against the model's features and write the shard plan.

    The job record claims the prediction id (a conditional write): an id already used
    with a different request is refused; the same request again replaces the earlier
    set of parts (its manifest is removed first, parts beyond the new shard count are
    deleted, and the new manifest is written last), so the prefix holds one set.
    ``fingerprint`` is the request as the user gave it (before any ingest),
    which is what "the same request" compares; ``asdict(request)`` if None.

    Returns
    -------
    dict
        ``bucket``, ``shards_key``, ``n_shards``, ``max_concurrency``, ``output_prefix``.
    """
    spec = data_spec(request.data)
    id_column = request.data.get("id_column")
    shards: list[dict[str, Any]] = []
    first_row = 0
    output_prefix = keys.predictions_prefix(prediction_id)
    for file_number, source in enumerate(sources(spec.uri)):
        X, _ = read_scoring_file(source, spec, feature_names, id_column, encoding)
        origin = part_source(source) if len(X) else source
        for start in range(0, len(X), request.shard_rows):
            stop = min(start + request.shard_rows, len(X))
            task = ShardTask(
                prediction_id=prediction_id,
                shard=len(shards),
                source=source,
                file=file_number,
                start=start,
                stop=stop,
                first_row=first_row + start,
                origin=origin,
            )
            shards.append(task.to_item())
        first_row += len(X)
    if first_row == 0:
        raise InvalidPredictRequest(f"{request.data['uri']} has no rows to score")
    if len(shards) > MAX_SHARDS:
        raise InvalidPredictRequest(
            f"{len(shards)} shards is more than {MAX_SHARDS}; raise shard_rows"
        )
    job = PredictJob(
        request=asdict(request),
        fingerprint=fingerprint or asdict(request),
        model_manifest_uri=model_manifest_uri,
        n_rows=first_row,
        shards=[ShardTask.from_item(s) for s in shards],
    )
    _claim_prediction(bucket, prediction_id, job)
    storage.put_json(bucket, keys.predictions_shards(prediction_id), shards)
    return {
        "bucket": bucket,
        "prediction_id": prediction_id,
        "shards_key": keys.predictions_shards(prediction_id),
        "n_shards": len(shards),
        "max_concurrency": fan_out_concurrency(request.max_concurrency, items=len(shards)),
        "output_prefix": output_prefix,
    }


def plan_predict_run(
    event: dict[str, Any],
    *,
    bucket: str,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
) -> dict[str, Any]:
    """Plan step of the predict state machine: validate, find the model, plan shards.

    ``data_buckets`` and ``local_paths`` say what the stack may read, as for training;
    ``event["converted"]["data"]``, when present, names the columnar copy of CSV or Parquet rows.
    """
    request = parse_predict_request(event.get("request"))
    check_readable(request.data["uri"], (bucket, *data_buckets), local_paths, InvalidPredictRequest)
    converted = (event.get("converted") or {}).get("data")
    prediction_id = request.prediction_id or check_id(
        event.get("execution_name"), name="prediction_id", error=InvalidPredictRequest
    )
    model_bucket, key, manifest = load_manifest(request.model, bucket)
    verify_model(model_bucket, key, manifest, by_grove=request.trees_per_group is not None)
    fingerprint = asdict(request)
    if converted is not None:
        request = replace(
            request,
            data={**request.data, "uri": converted["uri"], "format": converted["format"]},
        )
    return plan_predictions(
        request,
        bucket=bucket,
        prediction_id=prediction_id,
        feature_names=manifest.feature_names,
        model_manifest_uri=f"s3://{model_bucket}/{key}",
        fingerprint=fingerprint,
        encoding=manifest.encoding,
    )


def _claim_prediction(bucket: str, prediction_id: str, job: PredictJob) -> None:
    """Create the job record, or replace the same request's earlier set of parts."""
    job_key = keys.predictions_job(prediction_id)
    if storage.create_json(bucket, job_key, job.to_dict()):
        return
    stored = _read_job(bucket, prediction_id)
    if stored.fingerprint != job.fingerprint:
        raise InvalidPredictRequest(
            f"prediction_id {prediction_id!r} was already used with a different request "
            f"(model {stored.model_manifest_uri}); choose a new prediction_id, or "
            "repeat the original request to score it again"
        )
    storage.delete(bucket, keys.predictions_manifest(prediction_id))  # first: no stale commit
    wanted = {keys.predictions_part(prediction_id, shard.shard) for shard in job.shards}
    for key in storage.list_keys(bucket, keys.predictions_prefix(prediction_id)):
        if key.rsplit("/", 1)[1].startswith("part-") and key not in wanted:
            storage.delete(bucket, key)
    storage.put_json(bucket, job_key, job.to_dict())


_FOREST_CACHE: dict[tuple[str, str], artifact.Forest] = {}
"""The forest a warm Lambda loaded last, by its manifest's URI and the forest's sha256: a
grown run keeps its manifest's URI and names another forest, which is loaded afresh."""


def _read_job(bucket: str, prediction_id: str) -> PredictJob:
    """The prediction's job record, validated."""
    key = keys.predictions_job(prediction_id)
    return PredictJob.from_dict(storage.get_json(bucket, key), f"s3://{bucket}/{key}")


def _whole_forest(manifest_uri: str, manifest: ModelManifest) -> artifact.Forest:
    """The model as one forest, cached while the Lambda is warm (:data:`_FOREST_CACHE`)."""
    from groveflow import artifact  # scikit-learn, where a forest is loaded: see the imports

    key = (manifest_uri, manifest.forest.sha256)
    if key not in _FOREST_CACHE:
        _FOREST_CACHE.clear()
        _FOREST_CACHE[key] = artifact.load_forest(manifest_uri, manifest.to_dict())
    return _FOREST_CACHE[key]


def _grove_groups(
    bucket: str, manifest: ModelManifest, trees_per_group: int
) -> Iterator[artifact.Forest]:
    """Consecutive groups of the model's groves, verified, loaded one group at a time.

    Only one group is in memory at once: this is how a forest too big for one Lambda's
    memory is scored.
    """
    from groveflow import artifact  # scikit-learn, where a forest is loaded: see the imports

    current: list[artifact.Forest] = []
    for grove in manifest.groves:
        current.append(artifact.decode_trees(_verified_grove(bucket, grove)))
        if sum(g.n_trees for g in current) >= trees_per_group:
            yield artifact.Forest.concat(current)
            current = []
    if current:
        yield artifact.Forest.concat(current)


def _verified_grove(bucket: str, grove: GroveRecord) -> bytes:
    """One of the model's groves, checked against the manifest's sha256."""
    key = keys.grove(grove.run_id, grove.grove)
    try:
        blob, metadata = storage.get_object(bucket, key)
    except FileNotFoundError:
        raise ArtifactError(
            f"grove {grove.grove} of the model (s3://{bucket}/{key}) is missing"
        ) from None
    problem = grove_problem(blob, metadata, seed=grove.seed, sha256=grove.sha256)
    if problem is not None:
        raise ArtifactError(
            f"grove {grove.grove} of the model (s3://{bucket}/{key}) differs from the "
            f"model manifest's sha256 ({problem}): damaged or replaced"
        )
    return blob


def _scores(
    manifest_uri: str, manifest: ModelManifest, trees_per_group: int | None, X: np.ndarray
) -> np.ndarray:
    """Mean over all trees, summed tree by tree in model order, exactly as one forest does."""
    if trees_per_group is None:
        groups: Iterable[artifact.Forest] = [_whole_forest(manifest_uri, manifest)]
    else:
        groups = _grove_groups(storage.parse_s3_uri(manifest_uri)[0], manifest, trees_per_group)
    total: np.ndarray | None = None
    n_trees = 0
    for group in groups:
        total = group.accumulate(X, total)
        n_trees += group.n_trees
    assert total is not None
    return total / n_trees


def score_shard(item: dict[str, Any], *, bucket: str) -> dict[str, Any]:
    """Score one shard and write its predictions part (CSV)."""
    task = ShardTask.from_item(item)
    prediction_id = task.prediction_id
    telemetry.logger.append_keys(prediction_id=prediction_id, shard=task.shard)
    job = _read_job(bucket, prediction_id)
    request = parse_predict_request(job.request)
    model_bucket, key = storage.parse_s3_uri(job.model_manifest_uri)
    manifest = ModelManifest.from_dict(storage.get_json(model_bucket, key), job.model_manifest_uri)
    spec = data_spec(request.data)
    X, ids = read_scoring_file(
        task.source, spec, manifest.feature_names, request.data.get("id_column"), manifest.encoding
    )
    rows = slice(task.start, task.stop)
    mean = _scores(job.model_manifest_uri, manifest, request.trees_per_group, X[rows])
    part = _part_csv(mean, manifest, task.first_row, None if ids is None else ids[rows], request)
    # What FinishPredictions records, carried by the part itself: it reads them by HEAD.
    receipt = {"sha256": storage.sha256_hex(part), "rows": str(len(mean))}
    key = keys.predictions_part(prediction_id, task.shard)
    storage.put_bytes(bucket, key, part, metadata=receipt)
    telemetry.logger.info("shard scored", extra={"rows": len(mean)})
    telemetry.metrics.add_metric(
        name="RowsScored", unit=telemetry.MetricUnit.Count, value=len(mean)
    )
    return {"shard": task.shard}


def _part_csv(
    mean: np.ndarray,
    manifest: ModelManifest,
    first_row: int,
    ids: np.ndarray | None,
    request: PredictRequest,
) -> bytes:
    classes = manifest.classes
    header = ["row"] + (["id"] if ids is not None else []) + ["prediction"]
    if classes is not None and request.probabilities:
        header += [f"proba_{c}" for c in classes]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, scores in enumerate(mean):
        row: list[Any] = [first_row + i]
        if ids is not None:
            row.append(ids[i])
        if classes is None:
            row.append(repr(float(scores[0])))
        else:
            row.append(classes[int(np.argmax(scores))])
            if request.probabilities:
                row.extend(repr(float(p)) for p in scores)
        writer.writerow(row)
    return buffer.getvalue().encode()


PART_READERS = 32
"""Parts whose receipts FinishPredictions reads at once (S3's latency bounds one reader)."""


def _receipt(bucket: str, prediction_id: str, shard: ShardTask) -> dict[str, Any] | None:
    """What the shard's ScoreShard reported for its part (its object metadata, by HEAD):
    the part's manifest entry, or None if the shard wrote no part. The part is not read.

    Raises
    ------
    ShardMissing
        If the part does not say its rows and sha256 (written by an earlier groveflow) or
        holds other rows than the shard was planned with.
    """
    key = keys.predictions_part(prediction_id, shard.shard)
    try:
        metadata = storage.head_metadata(bucket, key)
    except FileNotFoundError:
        return None
    planned = shard.stop - shard.start
    if "sha256" not in metadata or not metadata.get("rows", "").isdigit():
        raise ShardMissing(
            f"shard {shard.shard}'s part {key} does not say its rows and sha256 (it was written "
            "by an earlier groveflow): run the prediction again"
        )
    if int(metadata["rows"]) != planned:
        raise ShardMissing(
            f"shard {shard.shard}'s part {key} holds {metadata['rows']} rows, and the shard was "
            f"planned with {planned}: run the prediction again"
        )
    return {
        "key": key.rsplit("/", 1)[1],
        "shard": shard.shard,
        "first_row": shard.first_row,
        "rows": planned,
        "source": shard.origin or shard.source,  # the user's file
        "sha256": metadata["sha256"],
    }


def finish_predictions(event: dict[str, Any], *, bucket: str) -> dict[str, Any]:
    """Check every shard's part exists and write the predictions manifest, last.

    Each part's rows and sha256 are what its shard reported (the part's metadata, read by
    HEAD, :data:`PART_READERS` at once): no part is read.
    """
    prediction_id = event["prediction_id"]
    job = _read_job(bucket, prediction_id)
    with ThreadPoolExecutor(PART_READERS) as pool:
        receipts = list(pool.map(lambda s: _receipt(bucket, prediction_id, s), job.shards))
    parts = [r for r in receipts if r is not None]
    missing = [s.shard for s, r in zip(job.shards, receipts, strict=True) if r is None]
    if missing:
        raise ShardMissing(f"shards {missing[:10]} wrote no predictions part; nothing was recorded")
    manifest = {
        "prediction_id": prediction_id,
        "model": job.model_manifest_uri,
        "n_rows": job.n_rows,
        "columns": "row, [id], prediction, [proba_<class>...]",
        "parts": parts,
    }
    storage.put_json(bucket, keys.predictions_manifest(prediction_id), manifest)
    return {
        "prediction_id": prediction_id,
        "predictions_uri": f"s3://{bucket}/{keys.predictions_manifest(prediction_id)}",
        "n_rows": job.n_rows,
        "n_parts": len(parts),
    }

"""Plan: validate the request, split the data once, claim the run id, write the grove plan."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from groveflow import storage, telemetry
from groveflow.datasets import (
    Dataset,
    check_readable,
    load_dataset,
    read_scoring_file,
    sources,
)
from groveflow.documents import (
    DataRecord,
    RunRecord,
    search_parts,
)
from groveflow.encoding import Encoding
from groveflow.errors import (
    DatasetTooLarge,
    GroveflowError,
    InvalidDataset,
    InvalidPredictRequest,
    InvalidRequest,
)
from groveflow.estimates import (
    RunEstimate,
    check_budget,
    check_growth_budget,
    choose_grove_size,
    estimate_run,
)
from groveflow.fan_out import fan_out_concurrency
from groveflow.layout import keys
from groveflow.oob import check_oob_coverage, wants_oob
from groveflow.request import (
    DataSpec,
    TrainRequest,
    data_spec,
    parse_predict_request,
    parse_train_request,
)
from groveflow.training._build import WEIGHT_SPLIT
from groveflow.training._concurrency import ConcurrencyLimit, concurrency_limit, fan_out_report
from groveflow.training._runs import (
    GROWTH_KEYS,
    RUN_DEFAULTS,
    SPLITS,
    _model_inputs,
    _read_record,
    _stored_record,
    describe_difference,
    grove_plan,
    request_differences,
    run_id_from,
    stored_search,
)
from groveflow.training._shards import (
    SHARD_MB,
    RowsDigest,
    Scan,
    allocate,  # noqa: F401 (tests import it from the plan)
    scan_parts,
    shard_rows_for,
    shards_key,
    write_shards,
)
from groveflow.training._sizing import (  # noqa: F401 (benchmarks/scale.py imports some here)
    BUILDER_TIMEOUT_SECONDS,
    GROVE_TIMEOUT_SHARE,
    PYTHON_BASELINE_MB,
    _rows_that_fit,
    _shard_overhead_mb,
    check_fits,
    check_grove_fits,
    check_merge_fits,
    estimate_grove_mb,
    grove_rows,
)
from groveflow.training._split import split_dataset, split_rows, test_mask

# --------------------------------------------------------------------------- plan


def plan_run(
    event: dict[str, Any],
    *,
    bucket: str,
    builder_memory_mb: int,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
    builder_reserved_concurrency: int | None = None,
    account_concurrency: Callable[[], int | None] | None = None,
    before_write: Callable[[dict[str, np.ndarray], dict[str, Any]], None] | None = None,
    plan_memory_mb: int | None = None,
    shard_mb: float = SHARD_MB,
    seconds_left: Callable[[], float] | None = None,
    search: bool = False,
    merge_memory_mb: int | None = None,
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
    account_concurrency : callable or None, default=None
        Reads the account's unreserved concurrency (``lambda:GetAccountSettings``,
        :func:`groveflow.training.unreserved_concurrency`); without reserved builders,
        ``max_concurrency`` is clamped to it less a headroom for the other functions
        (:func:`groveflow.training._concurrency.concurrency_limit`). None reads nothing.
    before_write : callable or None, default=None
        Called with the split and the run's estimate (a dict) after the plan's own checks and
        before anything is written, for a caller's checks (a search's candidates): what it
        raises refuses the run with nothing stored. Not called when the split is stored.
    plan_memory_mb : int or None, default=None
        The plan's own memory (in MB): CSV or Parquet data that would not fit it whole is
        read a part at a time into row shards (:mod:`groveflow.training._shards`), as is
        data whose training split does not fit a builder, or when ``rows_per_grove`` is set.
        None: no limit of its own.
    shard_mb : float, default=16
        The row shards' size (MiB of float32 features).
    seconds_left : callable or None, default=None
        The plan's time left (Lambda's ``context.get_remaining_time_in_millis`` / 1000): a
        split into row shards that would not be written in it is refused before writing.
    search : bool, default=False
        Whether this plans a search's run (:func:`groveflow.tuning.plan_search`), whose record
        says so: a training run is refused a search's id, and a search a training run's.
    merge_memory_mb : int or None, default=None
        The merge's memory (in MB, ``MergeMemorySize``): a forest whose merge the trial
        grove predicts would not fit it, or the merge's Timeout, is refused before any
        grove (:func:`groveflow.training._sizing.check_merge_fits`). None checks nothing.

    Returns
    -------
    dict
        ``run_id``, ``bucket``, ``plan_key``, ``n_groves``, ``max_concurrency``,
        ``fan_out`` (the requested concurrency and why it was clamped, for the run summary)
        and ``tolerated_failure_percentage``: small, so it fits any state payload.
    """
    limit = concurrency_limit(builder_reserved_concurrency, account_concurrency)
    if event.get("grow") is not None:
        return _plan_round(event, bucket, limit)
    started = time.perf_counter()
    limits = PlanLimits(
        readable=(bucket, *data_buckets),
        local_paths=local_paths,
        concurrency=limit,
        builder_memory_mb=builder_memory_mb,
        plan_memory_mb=plan_memory_mb,
        merge_memory_mb=merge_memory_mb,
        shard_mb=shard_mb,
        seconds_left=seconds_left,
    )
    request = parse_train_request(event.get("request"))
    check_readable(request.data.uri, limits.readable, local_paths)
    converted = event.get("converted") or {}
    run_id = request.run_id or run_id_from(event.get("execution_name"))
    telemetry.logger.append_keys(run_id=run_id)
    stored = _stored_record(bucket, run_id)
    _check_run_kind(bucket, run_id, stored, search)
    left_out = tuple(key for key in RUN_DEFAULTS if key not in event["request"])
    mode = PlanMode(
        stored=stored,
        grown_from=_check_same_run(stored, request, run_id, left_out),
        resumed=stored is not None and _split_stored(bucket, run_id, stored),
        search=search,
        left_out=left_out,
    )
    request = _keep_run_defaults(request, stored, left_out)
    read: _Read | None = None
    if mode.resumed:
        assert stored is not None
        feature_names, encoding = stored.feature_names, stored.encoding
        run_estimate = None if stored.estimate is None else RunEstimate.of(stored.estimate)
    else:
        request, read = _read_new(
            request, mode, converted, limits, started=started, before_write=before_write
        )
        feature_names, encoding, run_estimate = read.feature_names, read.encoding, read.estimate
    check_merge_fits(request, run_estimate, merge_memory_mb)
    check_grove_fits(request, run_estimate)
    # Everything is checked before anything is written: a refused run leaves nothing behind.
    predict = _predict_section(
        request,
        run_id,
        feature_names=feature_names,
        encoding=encoding,
        converted=converted.get("predict"),
        readable=limits.readable,
        local_paths=local_paths,
    )
    plan = grove_plan(request, run_id)
    if mode.grown_from is not None:
        plan = groves_to_grow(bucket, run_id, plan, mode.grown_from, request.grove_size)
        check_growth_budget(request, run_estimate, len(plan))
    if read is not None:
        _store_split(bucket, run_id, request, read, search=search)
    elif stored is not None and stored.request != request.to_dict():
        # grown, or resumed with other settings (max_concurrency, tolerated failures...)
        updated = replace(stored, request=request.to_dict())
        storage.put_json(bucket, keys.request(run_id), updated.to_dict())
    storage.put_json(bucket, keys.plan(run_id), plan)
    return {
        "run_id": run_id,
        "bucket": bucket,
        "plan_key": keys.plan(run_id),
        **_fan_out(
            request, plan, limit, None if run_estimate is None else run_estimate.grove_choice
        ),
        "tolerated_failure_percentage": request.tolerated_failure_percentage,
        "estimate": None if run_estimate is None else run_estimate.summary(),
        "predict": predict,
        # The columnar copy of CSV or Parquet rows to score, beside (not in) the request, so the
        # prediction is recognised as the same request whichever execution ingested it.
        "predict_converted": {"data": converted["predict"]} if converted.get("predict") else None,
    }


@dataclass(frozen=True)
class PlanMode:
    """Which plan this is, decided once from what is stored under the run's id.

    A *fresh* run has no record (``stored`` None); a *claimed* one has a record but not its
    whole split (an earlier plan stopped): both read the data. A *resumed* run's split is
    stored: nothing is read, the record's estimate is reused. A *grown* run asks for more
    trees than its stored forest (``grown_from`` of them): only the new groves are planned.
    A *search*'s base run (``search``) holds its split whole, for its candidates. A round
    of ``n_trees: "auto"`` (the event's ``grow``) is planned apart (:func:`_plan_round`).
    """

    stored: RunRecord | None
    grown_from: int | None
    resumed: bool
    search: bool
    left_out: tuple[str, ...]
    """The run defaults the input leaves out (a resumed run keeps its stored ones)."""

    @property
    def chooses_grove_size(self) -> bool:
        """A new run (no record) that left ``grove_size`` out: the trial chooses it."""
        return "grove_size" in self.left_out and self.stored is None


@dataclass(frozen=True)
class PlanLimits:
    """What the plan may read and use, built once from its caller's settings: where data may
    be read from, the Map's concurrency limit, the functions' memory (in MB), the row
    shards' size (MiB) and the plan's time left (seconds)."""

    readable: tuple[str, ...]
    local_paths: bool
    concurrency: ConcurrencyLimit
    builder_memory_mb: int
    plan_memory_mb: int | None
    merge_memory_mb: int | None
    shard_mb: float
    seconds_left: Callable[[], float] | None


def _read_new(
    request: TrainRequest,
    mode: PlanMode,
    converted: dict[str, Any],
    limits: PlanLimits,
    *,
    started: float,
    before_write: Callable[[dict[str, np.ndarray], dict[str, Any]], None] | None,
) -> tuple[TrainRequest, _Read]:
    """A fresh or claimed run's data, read and checked (its budget, and a caller's checks),
    and the request at the grove size its estimate is at (the request's, or the chosen one)."""
    stored = mode.stored
    read = read_and_check(
        request,
        _as_read(request.data, converted.get("data")),
        ingested=converted.get("data") is not None,
        whole_only=before_write is not None,
        layout=None if stored is None else stored.data.shards,
        claimed_whole=stored is not None and stored.data.shards is None,
        builder_memory_mb=limits.builder_memory_mb,
        builder_reserved_concurrency=limits.concurrency.builders,
        plan_memory_mb=limits.plan_memory_mb,
        shard_mb=limits.shard_mb,
        started=started,
        seconds_left=limits.seconds_left,
        grove_size_left_out=mode.chooses_grove_size and not request.auto,
    )
    request = replace(request, grove_size=read.estimate.trees_per_grove)
    check_budget(request, read.estimate)
    if before_write is not None:
        assert read.split is not None  # whole_only: a search's split is never sharded
        before_write(read.split, read.estimate.to_dict())
    return request, read


def _store_split(
    bucket: str, run_id: str, request: TrainRequest, read: _Read, *, search: bool
) -> None:
    """Claim the run (its record, with the size guard's estimate, kept so a run's summary can
    set it beside the measured peak, and the run's estimate), then store its split: whole, or
    in row shards. The record first, the split's last file last: a stored split is whole."""
    sharded = read.sharded
    record = (
        sharded.record(request, run_id)
        if sharded is not None
        else _run_record(request, run_id, read.dataset, read.split or {})
    )
    _claim(
        bucket,
        run_id,
        request,
        {
            **record,
            "builder_estimate_mb": read.estimate_mb,
            "estimate": read.estimate.to_dict() if read.estimate else None,
            "search_id": run_id if search else None,
        },
    )
    if sharded is not None:
        write_shards(
            bucket,
            run_id,
            sharded.spec,
            sharded.scan,
            sharded.test,
            task=request.model.task,
            shard_rows=sharded.shard_rows,
            rows_per_grove=sharded.rows_per_grove,
        )
        return
    assert read.split is not None
    # The weights first: y_test, written last, says the split is stored.
    names = (WEIGHT_SPLIT, *SPLITS) if WEIGHT_SPLIT in read.split else SPLITS
    for name in names:
        storage.put_bytes(bucket, keys.split(run_id, name), storage.npy_bytes(read.split[name]))


@dataclass
class _Read:
    """What the plan read and checked: the data whole (``dataset``, ``split``) or the scan of
    a run in row shards (``sharded``), and the size guard's and the run's estimates."""

    feature_names: list[str]
    encoding: Encoding | None
    estimate_mb: int
    estimate: RunEstimate
    dataset: Any = None
    split: dict[str, np.ndarray] | None = None
    sharded: _Sharded | None = None


def read_and_check(
    request: TrainRequest,
    spec: DataSpec,
    *,
    ingested: bool,
    whole_only: bool = False,
    layout: dict[str, Any] | None = None,
    claimed_whole: bool = False,
    builder_memory_mb: int,
    builder_reserved_concurrency: int | None,
    plan_memory_mb: int | None = None,
    shard_mb: float = SHARD_MB,
    started: float,
    workers: int | None = None,
    seconds_left: Callable[[], float] | None = None,
    grove_size_left_out: bool = False,
) -> _Read:
    """What the plan reads and checks, before it writes anything (``groveflow estimate``
    runs the same): the data whole, or, for ingested tables that do not fit the plan or
    whose training split does not fit a builder (or with ``rows_per_grove``), the scan of
    a run in row shards. ``whole_only`` (a search, which holds its split in one function)
    refuses, by name, data that would need row shards (and ``rows_per_grove``). ``layout``
    (the shard settings of a claimed run's record) splits as the record says;
    ``claimed_whole`` (a claimed run stored whole) never goes to row shards. Raises as the
    plan refuses."""
    _check_shardable(request, ingested)
    if whole_only and request.data.weight is not None:
        raise InvalidRequest(
            f"data.weight={request.data.weight!r}: a search does not fit its candidates with "
            "sample weights yet; search without data.weight, then train the winner with it"
        )
    if whole_only and request.rows_per_grove is not None:
        raise InvalidRequest(
            "rows_per_grove samples row shards, and a search holds its split in one function: "
            "remove rows_per_grove (search on a sample of the data instead)"
        )

    def sharded(why: str) -> _Read:
        if request.data.weight is not None:
            raise DatasetTooLarge(
                f"data.weight={request.data.weight!r} needs the training split whole in each "
                f"grove (row shards carry no weights), and this data does not fit: {why}. "
                "Train on a sample of the rows, raise the builders' memory, or remove data.weight"
            )
        if whole_only:
            raise DatasetTooLarge(
                f"a search holds its split in one function, and this data does not fit: {why}. "
                "Search on a sample of the data, then train the winner on all of it"
            )
        found = _plan_shards(
            request,
            spec,
            builder_memory_mb=builder_memory_mb,
            builder_reserved_concurrency=builder_reserved_concurrency,
            plan_memory_mb=plan_memory_mb,
            shard_mb=shard_mb,
            started=started,
            workers=workers,
            stored=layout,
            seconds_left=seconds_left,
        )
        names = found.scan.feature_names
        return _Read(names, None, found.estimate_mb, found.estimate, sharded=found)

    shardable = ingested and request.data.categorical is None
    if layout is not None:  # a claimed run splits as its record says, whatever the memory now
        return sharded("the run's record says its split is in row shards")
    if shardable and request.rows_per_grove is not None:
        return sharded(f"rows_per_grove={request.rows_per_grove} samples row shards")
    if shardable and not claimed_whole and not _fits_plan(spec, plan_memory_mb):
        return sharded(f"it is larger than the plan's {plan_memory_mb} MB holds whole")
    dataset = load_dataset(spec, request.model.task, learn_rows=lambda y: split_rows(y, request)[0])
    split = split_dataset(dataset, request)
    try:
        estimate_mb, run_estimate = plan_checks(
            request,
            split,
            builder_memory_mb=builder_memory_mb,
            builder_reserved_concurrency=builder_reserved_concurrency,
            plan_seconds=time.perf_counter() - started,
            ingested=ingested,
            workers=workers,
            grove_size_left_out=grove_size_left_out,
        )
    except DatasetTooLarge as error:
        # A training split too large for a builder: CSV or Parquet data goes to row shards,
        # each grove fitting on the most rows that fit it (the data read whole let go first).
        if not shardable or claimed_whole:
            raise
        del dataset, split
        return sharded(str(error).split(";")[0])
    return _Read(dataset.feature_names, dataset.encoding, estimate_mb, run_estimate, dataset, split)


def _split_stored(bucket: str, run_id: str, stored: RunRecord) -> bool:
    """Whether the run's split is stored whole: its arrays, or its shard document (last)."""
    if stored.data.shards is not None:
        return storage.exists(bucket, shards_key(run_id))
    return all(storage.exists(bucket, keys.split(run_id, s)) for s in SPLITS)


def _check_shardable(request: TrainRequest, ingested: bool) -> None:
    """``rows_per_grove`` samples row shards, which the plan writes for ingested tables."""
    if request.rows_per_grove is None:
        return
    if not ingested:
        raise InvalidRequest(
            f"rows_per_grove samples the row shards the plan writes from CSV or Parquet data; "
            f"{request.data.uri} is read whole (.npy, .npz, sklearn:): convert it to Parquet, "
            "or remove rows_per_grove"
        )
    if request.data.categorical is not None:
        raise InvalidRequest(
            "rows_per_grove with data.categorical is not supported yet (the encoding is "
            "learned from the whole training split in one function): encode the columns "
            "first, or remove rows_per_grove"
        )


def _fits_plan(spec: DataSpec, plan_memory_mb: int | None) -> bool:
    """Whether the plan can read ``spec``'s columnar parts whole: their bytes (float64
    columns) make a float32 matrix of half that, held with its split (twice) and the
    bytes of the split's largest array, about 1.5x the parts on top of the interpreter."""
    if plan_memory_mb is None:
        return True
    if spec.uri.startswith("s3://"):
        bucket, prefix = storage.parse_s3_uri(spec.uri)
        total = sum(size for _, size in storage.list_sizes(bucket, prefix))
    else:  # groveflow estimate's local copy of the ingested parts
        total = sum(p.stat().st_size for p in Path(spec.uri).rglob("*") if p.is_file())
    return PYTHON_BASELINE_MB + 1.5 * total / 2**20 <= plan_memory_mb


@dataclass
class _Sharded:
    """A run the plan splits into row shards: what it found and chose, before writing."""

    spec: DataSpec
    scan: Scan
    test: np.ndarray
    shard_rows: int
    rows_per_grove: int | None
    estimate_mb: int
    estimate: RunEstimate
    why: str

    def rule(self) -> str:
        n_train = int(len(self.test) - self.test.sum())
        if self.rows_per_grove is None:
            return f"every grove fits on all {n_train} training rows, read from the row shards"
        stratified = ", stratified by class" if self.scan.classes is not None else ""
        return (
            f"each grove fits on a seeded sample of {self.rows_per_grove} of the {n_train} "
            f"training rows{stratified}, drawn across the row shards"
        )

    def record(self, request: TrainRequest, run_id: str) -> dict[str, Any]:
        classes = self.scan.classes
        n_test = int(self.test.sum())
        record = RunRecord(
            run_id=run_id,
            request=request.to_dict(),
            feature_names=self.scan.feature_names,
            classes=classes.tolist() if classes is not None else None,
            classes_dtype=classes.dtype.str if classes is not None else None,
            data=DataRecord(
                uri=request.data.uri,
                sha256=self.scan.sha256,
                n_rows=self.scan.n_rows,
                n_features=self.scan.n_features,
                n_train=self.scan.n_rows - n_test,
                n_test=n_test,
                test_rows_sha256=_sha256_of(np.flatnonzero(self.test).astype(np.int64)),
                shards={
                    "key": shards_key(run_id),
                    "shard_rows": self.shard_rows,
                    "rows_per_grove": self.rows_per_grove,
                    "rule": self.rule(),
                    "why": self.why,
                },
            ),
        )
        return record.to_dict()


PLAN_BYTES_PER_ROW = 12
"""What the plan holds per row of a dataset it splits into row shards, at its peak: a class
number, the held-out flag, and while it draws them one class's row numbers (int64) twice."""
PLAN_BUFFERS_MB = 64
"""And besides: a part, the shard being written, and their transfers."""


def _plan_shards(
    request: TrainRequest,
    spec: DataSpec,
    *,
    builder_memory_mb: int,
    builder_reserved_concurrency: int | None,
    plan_memory_mb: int | None = None,
    shard_mb: float,
    started: float,
    workers: int | None = None,
    stored: dict[str, Any] | None = None,
    seconds_left: Callable[[], float] | None = None,
) -> _Sharded:
    """Scan the parts, split, choose each grove's rows and check them (nothing written).

    ``stored``: the shard settings of the run's record, when the run id is claimed (a
    resume): the same shard size and rows per grove, whatever the memory sizes now.
    """
    scanning = time.perf_counter()
    scan = scan_parts(spec, request.model.task)
    _check_time_left(scan, time.perf_counter() - scanning, seconds_left)
    needed_plan = (
        PYTHON_BASELINE_MB + PLAN_BUFFERS_MB + -(-scan.n_rows * PLAN_BYTES_PER_ROW // 2**20)
    )
    if plan_memory_mb is not None and needed_plan > plan_memory_mb:
        raise DatasetTooLarge(
            f"splitting {scan.n_rows} rows into row shards needs about {needed_plan} MB in the "
            f"plan, more than its {plan_memory_mb} MB: set PlanMemorySize to "
            f"{min(10240, -(-needed_plan * 6 // 5 // 64) * 64)} MB (docs/deploy.md)"
        )
    check_regression_target(scan.target_peak, scan.n_rows, request.model.task)
    test = test_mask(scan.n_rows, scan.codes, request)
    n_train = int(len(test) - test.sum())
    shard_rows = int(stored["shard_rows"]) if stored else shard_rows_for(scan.n_features, shard_mb)
    rows, why, needed = grove_rows(
        request, scan, n_train, shard_rows, builder_memory_mb=builder_memory_mb, stored=stored
    )
    run_estimate = _sharded_estimate(
        request,
        scan,
        test,
        rows or n_train,
        why,
        builder_memory_mb=builder_memory_mb,
        concurrency=fan_out_concurrency(
            request.max_concurrency, items=request.n_groves, limit=builder_reserved_concurrency
        ),
        # the scan so far; the second pass (read again, write the shards) about as long
        plan_seconds=2 * (time.perf_counter() - started),
        workers=workers,
    )
    check_oob_coverage(n_train, request.model.params, request.n_trees)
    telemetry.logger.info(
        "split into row shards", extra={"rows": scan.n_rows, "shard_rows": shard_rows, "why": why}
    )
    return _Sharded(spec, scan, test, shard_rows, rows, needed(rows or n_train), run_estimate, why)


WRITE_PASS_RATIO = 1.5
"""The second pass's time over the first's: it reads the parts again and writes the shards."""
PLAN_MARGIN_SECONDS = 30.0
"""Time the plan keeps for what follows the shards (the plan, the checks, returning)."""


def _check_time_left(
    scan: Scan, scan_seconds: float, seconds_left: Callable[[], float] | None
) -> None:
    """Refuse, before writing, a split the plan would not finish in its time left: the
    second pass takes about :data:`WRITE_PASS_RATIO` times the first's seconds."""
    if seconds_left is None:
        return
    needed = WRITE_PASS_RATIO * scan_seconds + PLAN_MARGIN_SECONDS
    left = seconds_left()
    if needed > left:
        raise DatasetTooLarge(
            f"splitting {scan.n_rows} rows ({scan.bytes_read / 2**20:.0f} MB of parts) into row "
            f"shards needs about {needed:.0f} s more, and the plan has {left:.0f} s left: its "
            f"first pass took {scan_seconds:.0f} s. Raise PlanFunction's Timeout in "
            "template.yaml (Lambda allows 900 s), or split the data into several runs"
        )


def _sharded_estimate(
    request: TrainRequest,
    scan: Scan,
    test: np.ndarray,
    grove_rows: int,
    why: str,
    *,
    builder_memory_mb: int,
    concurrency: int,
    plan_seconds: float,
    workers: int | None,
) -> RunEstimate:
    """Check the parameters against a sample of the training rows (the trial grove) and
    estimate the run, scaled to the rows each grove fits on."""
    n_train = int(len(test) - test.sum())
    if grove_rows < n_train and (wants_oob(request.model.params) or request.auto is not None):
        raise InvalidRequest(
            "OOB scores (oob_score, n_trees='auto') need every grove to fit on the whole "
            f"training split, and here each fits on a sample ({why}): use the holdout "
            "metrics, or give the builders the memory for all rows"
        )
    params = dict(request.model.params)
    most = params.get("max_samples")
    if isinstance(most, int) and not isinstance(most, bool):
        if most > grove_rows:
            raise InvalidRequest(
                f"model.params.max_samples={most} is more than the {grove_rows} rows each grove "
                f"fits on ({why}): give at most that, or a fraction"
            )
        params["max_samples"] = most / grove_rows  # the same share of the trial's rows
    trial_request = replace(request, model=replace(request.model, params=params))
    assert scan.trial_X is not None and scan.trial_y is not None
    held = test[scan.trial_rows]
    return estimate_run(
        trial_request,
        scan.trial_X[~held],
        scan.trial_y[~held],
        scan.trial_X[held],
        builder_memory_mb=builder_memory_mb,
        concurrency=concurrency,
        plan_seconds=plan_seconds,
        ingested=True,
        scale_to=(grove_rows, int(test.sum()), n_train),
        workers=workers,
    )


def check_regression_target(peak: float, n_rows: int, task: str) -> None:
    """Refuse a regression target whose squares overflow float64: scikit-learn's squared
    error sums the squares of the targets (and of the errors, up to twice the target) over
    the rows, so the largest magnitude ``peak`` must stay below
    ``sqrt(float64 max / (4 * n_rows))``; above it the trees and the metrics are not finite."""
    if task != "regression" or n_rows == 0:
        return
    bound = float(np.sqrt(np.finfo(np.float64).max / (4 * n_rows)))
    if peak > bound:
        raise InvalidDataset(
            f"the regression target reaches {peak:.3g}: scikit-learn's squared error sums the "
            f"squares of the targets and their errors over the {n_rows} rows, which overflow "
            f"float64 for targets above {bound:.3g}. Rescale the target (divide it by a power "
            "of ten) or model its logarithm"
        )


def plan_checks(
    request: TrainRequest,
    split: dict[str, np.ndarray],
    *,
    builder_memory_mb: int,
    builder_reserved_concurrency: int | None,
    plan_seconds: float,
    ingested: bool,
    workers: int | None = None,
    grove_size_left_out: bool = False,
) -> tuple[int, RunEstimate]:
    """What the plan checks against the split, and its estimate: the size guard, a trial
    grove (which refuses parameters that do not fit the data, and times the run) and OOB
    coverage. ``groveflow estimate`` runs the same. ``grove_size_left_out`` (the request left
    it out): the estimate is at the grove size the plan chooses
    (:func:`groveflow.estimates.choose_grove_size`, each grove within the size guard), its
    ``grove_choice`` saying which and why. Returns the builder memory estimate (in MB) and
    the run's estimate; raises as the plan refuses."""
    if request.model.task == "regression":
        y = np.concatenate([split["y_train"], split["y_test"]])
        check_regression_target(float(np.max(np.abs(y))), len(y), request.model.task)
    estimate_mb = check_fits(split["X_train"], request, builder_memory_mb, y_train=split["y_train"])
    run_estimate = estimate_run(
        request,
        split["X_train"],
        split["y_train"],
        split["X_test"],
        builder_memory_mb=builder_memory_mb,
        concurrency=fan_out_concurrency(
            request.max_concurrency, items=request.n_groves, limit=builder_reserved_concurrency
        ),
        plan_seconds=plan_seconds,
        ingested=ingested,
        workers=workers,
    )
    if grove_size_left_out:

        def fits(grove_size: int) -> bool:
            try:
                check_fits(
                    split["X_train"],
                    replace(request, grove_size=grove_size),
                    builder_memory_mb,
                    y_train=split["y_train"],
                )
            except DatasetTooLarge:
                return False
            return True

        most = fan_out_concurrency(request.max_concurrency, limit=builder_reserved_concurrency)
        run_estimate = choose_grove_size(
            run_estimate,
            max_concurrency=most,
            fits=fits,
            max_grove_seconds=GROVE_TIMEOUT_SHARE * BUILDER_TIMEOUT_SECONDS,  # check_grove_fits
        )
        chosen = replace(request, grove_size=run_estimate.trees_per_grove)
        estimate_mb = check_fits(
            split["X_train"], chosen, builder_memory_mb, y_train=split["y_train"]
        )
    check_oob_coverage(len(split["y_train"]), request.model.params, request.n_trees)
    return estimate_mb, run_estimate


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
    rows = 0
    for source in sources(spec.uri):
        X, _ = read_scoring_file(
            source, spec, feature_names, predict.data.get("id_column"), encoding
        )
        rows += len(X)
    if rows == 0:
        raise InvalidRequest(f"predict: {predict.data['uri']} has no rows to score")
    return section


def _check_same_run(
    stored: RunRecord | None,
    request: TrainRequest,
    run_id: str,
    left_out: tuple[str, ...] = (),
) -> int | None:
    """Refuse a run id already used with different model inputs (the predict section, the
    run id itself and the other :data:`RUN_SETTINGS` aside), naming the keys that differ.

    ``left_out`` are the keys of :data:`RUN_DEFAULTS` the input did not give: the run keeps
    its own (:func:`_keep_run_defaults`), so they are not compared. Returns the stored run's
    ``n_trees`` when the request grows it (the same inputs with more trees), else None (a
    resume, or an ``n_trees="auto"`` run with a higher ``max_trees``, which replays its
    rounds on its stored groves and goes on).
    """
    if stored is None:
        return None
    before = _model_inputs(stored.request, left_out)
    now = _model_inputs(request.to_dict(), left_out)
    differences = request_differences(before, now)
    if not differences:
        return None
    others = [key for key in differences if key not in GROWTH_KEYS]
    if others:
        named = "; ".join(describe_difference(key, differences[key]) for key in others)
        raise InvalidRequest(
            f"run_id {run_id!r} was already used with a different input: {named}. Choose a "
            "new run_id, or repeat the original input to resume (or the same input with a "
            "larger n_trees, or max_trees for n_trees='auto', to grow it)"
        )
    for key, (old, new) in differences.items():
        if not (isinstance(old, int) and isinstance(new, int)):
            raise InvalidRequest(
                f"run_id {run_id!r} has n_trees={old!r}; n_trees={new!r} changes how the "
                "forest is grown: give n_trees as the run did, or a new run_id"
            )
        if new < old:
            raise InvalidRequest(
                f"run_id {run_id!r} has {key}={old}; a forest grows but does not shrink "
                f"({key}={new}): give more trees, or a new run_id"
            )
    return int(before["n_trees"]) if "n_trees" in differences else None


def _check_run_kind(bucket: str, run_id: str, stored: RunRecord | None, search: bool) -> None:
    """Refuse, before any data is read or anything written, a training run into a search's
    id or one of its parts' (a candidate, its validation split), and a search into a trained
    run's id: either would mix one's forest or split into the other's run."""
    search_id = _search_holding(bucket, run_id, stored)
    if not search and search_id is not None:
        document = stored_search(bucket, search_id) or {}
        winner = document.get("model_run_id")
        what = "is the id of search" if search_id == run_id else "is a part of search"
        model = (
            f"its model is run {winner!r} (predict with model={winner!r})"
            if winner
            else "it has no winner yet"
        )
        raise InvalidRequest(
            f"run_id {run_id!r} {what} {search_id!r}, whose split and candidates it holds; "
            f"{model}. Train under a new run_id (the winner's parameters are in its "
            "manifest), or repeat the search's input to resume it"
        )
    if search and stored is not None and search_id is None:
        raise InvalidRequest(
            f"run_id {run_id!r} holds a training run, not a search: give the search a new run_id"
        )


def _search_holding(bucket: str, run_id: str, stored: RunRecord | None) -> str | None:
    """The search ``run_id`` is part of: as its record says, else (a search planned before
    records said so) the search whose document is at ``run_id`` or names it as a candidate,
    its validation split or its model."""
    if stored is not None and stored.search_id is not None:
        return stored.search_id
    if stored_search(bucket, run_id) is not None:
        return run_id
    parent = run_id.rsplit("-", 1)[0]
    document = stored_search(bucket, parent) if parent != run_id else None
    if document is None:
        return None
    return parent if run_id in search_parts(parent, document) else None


def _keep_run_defaults(
    request: TrainRequest, stored: RunRecord | None, left_out: tuple[str, ...]
) -> TrainRequest:
    """``request`` with the claimed run's values for the :data:`RUN_DEFAULTS` its input left
    out: a run of 6 trees (one grove of 6) grown to 18 keeps groves of 6, and an
    ``n_trees="auto"`` run whose ``max_trees`` is raised keeps its rounds' size. Called
    once :func:`_check_same_run` accepted the request, so the values are valid for it (a
    forest only grows)."""
    if stored is None:
        return request
    before = stored.request
    grove_size = before.get("grove_size")
    if "grove_size" in left_out and isinstance(grove_size, int):
        request = replace(request, grove_size=grove_size)
    rounds = before.get("round_trees")
    if "round_trees" in left_out and request.auto is not None and isinstance(rounds, int):
        request = replace(request, n_trees=rounds, auto=replace(request.auto, round_trees=rounds))
    return request


def _plan_round(event: dict[str, Any], bucket: str, limit: ConcurrencyLimit) -> dict[str, Any]:
    """Plan the next round of an ``n_trees: "auto"`` run: its groves to grow, nothing else.

    ``event["grow"]`` is ``{"run_id", "n_trees", "from_n_trees"}`` (the round's target and
    the forest's trees so far), ``event["plan"]`` the run's first plan output, which this
    returns with the round's counts.
    """
    grow = event["grow"]
    record = _read_record(bucket, grow["run_id"])
    request = replace(parse_train_request(record.request), n_trees=int(grow["n_trees"]))
    run_id = record.run_id
    plan = groves_to_grow(
        bucket, run_id, grove_plan(request, run_id), int(grow["from_n_trees"]), request.grove_size
    )
    storage.put_json(bucket, keys.plan(run_id), plan)
    return {**event["plan"], **_fan_out(request, plan, limit)}


def _fan_out(
    request: TrainRequest,
    plan: list[dict[str, Any]],
    limit: ConcurrencyLimit,
    grove_choice: str | None = None,
) -> dict[str, Any]:
    """The Map's size and concurrency for ``plan``: ``max_concurrency`` clamped to the
    groves to build and to the builders' limit (reserved, or what the account leaves: more
    would be throttled), with the summary's account of it (``fan_out``, and the grove size
    the plan chose with why, when it chose)."""
    fan_out = fan_out_report(request.max_concurrency, len(plan), limit)
    if grove_choice is not None:
        fan_out = {**fan_out, "grove_size": request.grove_size, "grove_choice": grove_choice}
    return {
        "n_groves": len(plan),
        "n_trees": request.n_trees,
        "max_concurrency": fan_out["max_concurrency"],
        "fan_out": fan_out,
    }


def groves_to_grow(
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
    if stored is not None and (grown_from is not None or stored.request != record["request"]):
        storage.put_json(bucket, keys.request(run_id), record)


def _rows_sha256(X: np.ndarray, y: np.ndarray) -> str:
    digest = RowsDigest()
    digest.update(X, y)
    return digest.hexdigest()


def _data_sha256(dataset: Dataset) -> str:
    """The rows' sha256, and their weights' when the data has them (a run trained on other
    weights is other data)."""
    rows = _rows_sha256(dataset.X, dataset.y)
    if dataset.weight is None:
        return rows
    return hashlib.sha256(f"{rows}:{_sha256_of(dataset.weight)}".encode()).hexdigest()


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
            sha256=_data_sha256(dataset),
            n_rows=len(dataset.y),
            n_features=dataset.X.shape[1],
            n_train=len(split["y_train"]),
            n_test=len(split["y_test"]),
            test_rows_sha256=_sha256_of(split["test_rows"].astype(np.int64)),
        ),
        encoding=dataset.encoding,
    )
    return record.to_dict()

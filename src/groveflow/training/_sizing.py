"""The plan's sizing rules: what a grove builder holds (:func:`estimate_grove_mb`), how many
rows each grove of a run in row shards fits on (:func:`grove_rows`), and the checks that a
run fits the functions that run it, before any grove."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from groveflow.errors import DatasetTooLarge, InvalidRequest
from groveflow.estimates import RunEstimate, vcpu_factor
from groveflow.merge_memory import LAMBDA_MAX_MEMORY_MB, MERGE_TIMEOUT_SECONDS
from groveflow.request import TrainRequest
from groveflow.training._shards import Scan

__all__ = [
    "BUILDER_TIMEOUT_SECONDS",
    "GROVE_TIMEOUT_SHARE",
    "PYTHON_BASELINE_MB",
    "check_fits",
    "check_grove_fits",
    "check_merge_fits",
    "estimate_grove_mb",
    "grove_rows",
]

BUILDER_TIMEOUT_SECONDS = 900
"""BuildGroveFunction's Timeout in template.yaml (a contract test holds them equal)."""

GROVE_TIMEOUT_SHARE = 0.5
"""The share of the builders' Timeout a grove may be predicted to take. The trial grove's
prediction is good to about 2x; a grove that times out is retried as a transient fault (up to
60 times, each attempt billed to its Timeout), so one predicted near the limit is refused."""


def check_merge_fits(
    request: TrainRequest,
    estimate: RunEstimate | None,
    merge_memory_mb: int | None,
    *,
    timeout_seconds: int = MERGE_TIMEOUT_SECONDS,
) -> None:
    """Refuse, before any grove, a forest whose merge would not fit ``MergeMemorySize``
    (``merge_memory_mb``) or the merge's Timeout, as ``estimate`` (the plan's, from its
    trial grove) predicts them. The forest is the request's ``n_trees`` (``max_trees`` for
    ``n_trees: "auto"``, the last round's merge); no merge memory given, no estimate, or an
    estimate without the memory model (stored by an earlier groveflow) checks nothing.

    Raises
    ------
    DatasetTooLarge
        Naming ``MergeMemorySize``, the memory the merge needs, the most trees that fit, and
        the fix (fewer or shallower trees, or a larger ``MergeMemorySize``).
    """
    if estimate is None or merge_memory_mb is None:
        return
    n_trees = max(request.n_trees, request.auto.max_trees if request.auto is not None else 0)
    size = estimate.merge_size
    if size.mb_per_tree <= 0:
        return
    needed = size.peak_mb(n_trees)
    if needed > merge_memory_mb:
        raise DatasetTooLarge(
            f"a forest of {n_trees} trees needs about {needed} MB in the merge "
            f"({size.mb_per_tree:.3f} MB a tree, as the trial grove measured, and "
            f"{size.fixed_mb:.0f} MB besides), more than MergeMemorySize={merge_memory_mb} MB: "
            f"at most {size.most_trees(merge_memory_mb)} such trees fit. "
            f"{_merge_hint(needed)}"
        )
    # One merge of the whole forest (each round's merges the forest so far).
    seconds = (
        estimate.aws.merge_seconds
        / estimate.rounds
        * n_trees
        / max(1, estimate.n_trees)
        * vcpu_factor(merge_memory_mb)
        / vcpu_factor(estimate.merge_memory_mb)
    )
    if seconds > timeout_seconds:
        raise DatasetTooLarge(
            f"a forest of {n_trees} trees needs about {seconds:.0f} s to merge "
            f"({estimate.merge_seconds_per_tree:.4f} s a tree, as the trial grove measured), "
            f"more than the merge's Timeout of {timeout_seconds} s: ask for fewer trees "
            "(n_trees, or max_trees), or shallower ones (max_depth, min_samples_leaf)"
        )


def check_grove_fits(
    request: TrainRequest,
    estimate: RunEstimate | None,
    *,
    timeout_seconds: int = BUILDER_TIMEOUT_SECONDS,
) -> None:
    """Refuse, before any grove, groves the trial predicts would take more than
    :data:`GROVE_TIMEOUT_SHARE` of the builders' Timeout: such a grove would time out, be
    retried as a transient fault and billed on every attempt, and fail the run after all.

    Raises
    ------
    DatasetTooLarge
        Naming the grove's predicted seconds, the Timeout, and the fix (a smaller
        ``grove_size``, shallower trees, or fewer rows a grove).
    """
    if estimate is None:
        return
    seconds = estimate.aws_grove_seconds
    limit = GROVE_TIMEOUT_SHARE * timeout_seconds
    if seconds <= limit:
        return
    per_tree = max(estimate.aws_grove_seconds / max(1, request.grove_size), 1e-9)
    fits = int(limit // per_tree)
    fix = (
        f"lower grove_size to {fits} or fewer"
        if 1 <= fits < request.grove_size
        else "grow shallower trees (max_depth, min_samples_leaf) or fit each grove on fewer "
        "rows (max_samples, rows_per_grove)"
    )
    raise DatasetTooLarge(
        f"a grove of {request.grove_size} trees is predicted to take about {seconds:.0f} s on "
        f"a {estimate.builder_memory_mb} MB builder ({1000 * estimate.seconds_per_tree:.1f} ms "
        f"a tree in the trial grove), more than {GROVE_TIMEOUT_SHARE:.0%} of the builders' "
        f"Timeout of {timeout_seconds} s; a grove that times out is retried and billed on every "
        f"attempt: {fix}"
    )


def _merge_hint(needed_mb: int) -> str:
    fewer = "ask for fewer trees (n_trees, or max_trees), or shallower ones (max_depth, "
    fewer += "min_samples_leaf)"
    suggestion = -(-needed_mb * 6 // 5 // 64) * 64
    if suggestion > LAMBDA_MAX_MEMORY_MB:
        return (
            f"Lambda's {LAMBDA_MAX_MEMORY_MB:,} MB ceiling is not enough for this forest: {fewer}"
        )
    return (
        f"{fewer[0].upper()}{fewer[1:]}; or set MergeMemorySize to {suggestion} MB (up to "
        f"{LAMBDA_MAX_MEMORY_MB:,} MB; above 3,008 MB only where the account allows it, "
        "docs/deploy.md)"
    )


# ------------------------------------------------------------------ a builder's grove

PYTHON_BASELINE_MB = 200  # interpreter + numpy + scikit-learn, measured on python3.12


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


def check_fits(
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
        hint = _memory_hint(needed)
        if request.data.categorical is None:
            hint += "; or give CSV or Parquet data, which each grove can sample (rows_per_grove)"
        raise DatasetTooLarge(
            f"a grove of {request.grove_size} trees on "
            f"{X_train.shape[0]} x {X_train.shape[1]} rows "
            f"needs about {needed} MB, more than the builder's {memory_mb} MB; {hint}"
        )
    return needed


def grove_rows(
    request: TrainRequest,
    scan: Scan,
    n_train: int,
    shard_rows: int,
    *,
    builder_memory_mb: int,
    stored: dict[str, Any] | None,
) -> tuple[int | None, str, Callable[[int], int]]:
    """The rows each grove fits on (None: every training row), why, and the builder memory
    (MB) a grove of so many rows needs; refusing what does not fit, by name."""
    n_classes = 1 if scan.classes is None else len(scan.classes)
    overhead = _shard_overhead_mb(shard_rows, scan.n_features)

    def needed(rows: int) -> int:
        return estimate_grove_mb(rows, scan.n_features, n_classes, request) + overhead

    fitting = _rows_that_fit(needed, builder_memory_mb, n_train)
    smallest = max(2, n_classes)
    rows, why = _rows_given(request, stored)
    if rows is not None:
        _check_rows_asked(rows, n_train, n_classes)
    if rows == n_train:
        rows = None  # a sample of every row is every row
    if rows is None and stored is None and fitting < n_train:
        if fitting < smallest:
            raise DatasetTooLarge(
                f"a grove of {request.grove_size} trees on {scan.n_features} features does not "
                f"fit a {builder_memory_mb} MB builder even on {smallest} rows; "
                f"{_memory_hint(needed(smallest))}, or lower grove_size"
            )
        rows = fitting
        why = (
            f"the {n_train} training rows need about {needed(n_train)} MB per builder, more "
            f"than its {builder_memory_mb} MB: rows_per_grove={rows}, the most that fit"
        )
    elif rows is None and stored is None:
        why = "the dataset does not fit the plan's memory whole"
    if needed(rows or n_train) > builder_memory_mb:
        _refuse_rows(
            rows,
            n_train,
            needed,
            n_features=scan.n_features,
            builder_memory_mb=builder_memory_mb,
            fitting=fitting,
        )
    return rows, why, needed


def _rows_given(request: TrainRequest, stored: dict[str, Any] | None) -> tuple[int | None, str]:
    """The rows per grove a claimed run's layout (``stored``) or the request gives, and why."""
    if stored is not None:
        return stored.get("rows_per_grove"), str(stored.get("why"))
    return request.rows_per_grove, f"rows_per_grove={request.rows_per_grove} was set"


def _check_rows_asked(rows: int, n_train: int, n_classes: int) -> None:
    """Refuse ``rows_per_grove`` above the training split, or below a stratified sample's."""
    if rows > n_train:
        raise InvalidRequest(
            f"rows_per_grove={rows} is more than the training split's {n_train} rows: "
            "give at most that, or remove rows_per_grove to train every grove on all of them"
        )
    if rows < max(2, n_classes):
        raise InvalidRequest(
            f"rows_per_grove={rows} is smaller than a stratified sample needs: "
            f"{n_classes} classes need at least one row each ({max(2, n_classes)} rows at least)"
            if n_classes > 1
            else f"rows_per_grove={rows} is too small: a grove needs 2 rows at least"
        )


def _refuse_rows(
    rows: int | None,
    n_train: int,
    needed: Callable[[int], int],
    *,
    n_features: int,
    builder_memory_mb: int,
    fitting: int,
) -> None:
    """Refuse, by name, groves of ``rows`` (None: every training row) too big for a builder."""
    given = f"rows_per_grove={rows}" if rows is not None else f"all {n_train} training rows"
    raise DatasetTooLarge(
        f"{given} on {n_features} features needs about {needed(rows or n_train)} MB "
        f"per grove builder, more than its {builder_memory_mb} MB: at most {fitting} rows "
        f"fit; lower rows_per_grove or {_memory_hint(needed(rows or n_train))}"
    )


def _shard_overhead_mb(shard_rows: int, n_features: int) -> int:
    """What a builder holds besides its rows while it reads: a shard's file and its arrays."""
    return int(np.ceil(2 * shard_rows * (n_features * 4 + 16) / 2**20))


def _rows_that_fit(needed: Callable[[int], int], memory_mb: int, most: int) -> int:
    """The most rows (at most ``most``) whose grove ``needed`` says fits ``memory_mb``."""
    if needed(most) <= memory_mb:
        return most
    low, high = 0, most  # needed(low) fits (or low is 0), needed(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if needed(middle) <= memory_mb else (low, middle)
    return low


def _memory_hint(needed: int) -> str:
    suggestion = min(10240, int(np.ceil(needed * 1.2 / 64)) * 64)
    if suggestion >= 10240:
        return "Lambda's 10,240 MB ceiling is not enough: sample the data or lower grove_size"
    return (
        f"set the grove builder's memory to {suggestion} MB (the BuilderMemorySize "
        "parameter; above 3,008 MB only where the account allows it, see docs/deploy.md)"
    )

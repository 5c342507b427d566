"""The plan's checks that a run fits the functions that run it, before any grove."""

from __future__ import annotations

from groveflow.errors import DatasetTooLarge
from groveflow.estimates import RunEstimate, vcpu_factor
from groveflow.merge_memory import LAMBDA_MAX_MEMORY_MB, MERGE_TIMEOUT_SECONDS
from groveflow.request import TrainRequest

__all__ = ["BUILDER_TIMEOUT_SECONDS", "GROVE_TIMEOUT_SHARE", "check_grove_fits", "check_merge_fits"]

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

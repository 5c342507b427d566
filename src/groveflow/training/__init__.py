"""The three stages of a training run: plan, build one grove, merge.

Each stage is what one Lambda handler calls. They share nothing but the bucket:
the plan writes the split and the grove plan, each grove builder writes one
grove object under a deterministic key, and the merge writes the forest and,
last, the manifest that makes the model exist.

- :mod:`._plan`: :func:`plan_run` (and a round of ``n_trees="auto"``).
- :mod:`._build`: :func:`build_grove`.
- :mod:`._merge`: :func:`merge_run` (with OOB scores and the next round's size).
- :mod:`._runs`: what the stages read alike (the run record, the grove list, a grove's check).
- :mod:`._shards`: a split in row shards, for data no one function holds.
"""

from groveflow.documents import MANIFEST_VERSION
from groveflow.estimates import GROVE_READERS
from groveflow.training._build import build_grove
from groveflow.training._concurrency import unreserved_concurrency
from groveflow.training._merge import merge_run
from groveflow.training._plan import (
    check_fits,
    estimate_grove_mb,
    groves_to_grow,
    plan_checks,
    plan_run,
    read_and_check,
)
from groveflow.training._runs import (
    describe_difference,
    grove_plan,
    read_split,
    request_differences,
    run_id_from,
    split_run,
    stored_search,
)
from groveflow.training._split import split_dataset, split_rows, test_mask

__all__ = [
    "GROVE_READERS",
    "MANIFEST_VERSION",
    "build_grove",
    "check_fits",
    "describe_difference",
    "estimate_grove_mb",
    "grove_plan",
    "groves_to_grow",
    "merge_run",
    "plan_checks",
    "plan_run",
    "read_and_check",
    "read_split",
    "request_differences",
    "run_id_from",
    "split_dataset",
    "split_rows",
    "split_run",
    "stored_search",
    "test_mask",
    "unreserved_concurrency",
]

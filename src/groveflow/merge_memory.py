"""Will the merge fit? Its peak memory and time, predicted from the plan's trial grove.

The merge (:func:`groveflow.training.merge_run`) holds the whole forest in one function:
every grove decoded (their stored arrays), the forest concatenated from them, the forest's
file while it is sealed, scikit-learn's trees rebuilt to score the held-out rows, the
held-out rows and their predictions, and with ``oob_score`` the OOB sums of the training
rows. All but the last three grow with the trees, so the peak is a line in ``n_trees``:

    peak = fixed + n_trees x per tree, where

- per tree = :data:`ENCODED_COPIES` x the trial tree's encoded bytes
  + its nodes x (:data:`SKLEARN_NODE_BYTES` + 8 bytes per class value);
- fixed = :data:`MERGE_BASELINE_MB` + the held-out rows (float32 features, read and
  converted; a shard of them, :data:`TEST_SHARD_MB`, for a split in row shards) and their
  predictions (a float64 row of class values per thread, and the sum)
  + with OOB, the training rows' sums (the totals and :data:`OOB_READERS` groves' read at
  once, each as bytes and as an array).

The constants are calibrated on real merges on the local engine, whose workers report each
invocation's ``Max Memory Used`` (``tests/test_fanout_merge.py`` measures the prediction
against such merges and holds it within :data:`MEASURED_FACTOR`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ENCODED_COPIES",
    "LAMBDA_MAX_MEMORY_MB",
    "MEASURED_FACTOR",
    "MERGE_BASELINE_MB",
    "MERGE_TIMEOUT_SECONDS",
    "OOB_READERS",
    "SKLEARN_NODE_BYTES",
    "TEST_SHARD_MB",
    "MergeSize",
    "merge_size",
]

MERGE_BASELINE_MB = 200
"""The merge's interpreter with numpy, scikit-learn and boto3 imported, and its clients:
a merge of 200 small trees (digits, 0.4 MB of forest) measured 171 MB on the local engine."""
ENCODED_COPIES = 6
"""Copies of the encoded trees the merge holds at once: the groves' stored arrays, the
forest concatenated from them, and the forest's file while it is sealed (its arrays'
bytes, joined, framed, and the sealed file)."""
SKLEARN_NODE_BYTES = 64 + 32
"""A scikit-learn tree node (``NODE_DTYPE``, 64 bytes) and the arrays it is rebuilt from
(one tree at a time, but kept per tree by the allocator)."""
OOB_READERS = 32
"""The merge's grove readers (:data:`groveflow.training.GROVE_READERS`), each holding a
grove's OOB sums twice (the file and its arrays) while it reads them."""
MERGE_THREADS = 2
"""The threads that score the held-out rows, each holding a tree's predictions for its
rows (the local engine's workers and a 3,008 MB merge have two vCPUs)."""
TEST_SHARD_MB = 64
"""The held-out features a merge of a split in row shards holds at once: one shard (16 MiB
of float32 features, ``GROVEFLOW_SHARD_MB``'s default) as read and as scored, with room."""
MERGE_TIMEOUT_SECONDS = 900
"""MergeFunction's Timeout in template.yaml (its Globals': Lambda's longest)."""
LAMBDA_MAX_MEMORY_MB = 10240
"""The most memory a Lambda function can have."""
MEASURED_FACTOR = 1.5
"""The prediction is at least the measured peak, and at most this many times it (measured
1.17-1.32 times on the local engine, 2026-12-07: forests of 0.4-65 MB, 40-300 trees,
regression and classification, with and without OOB, whole and in row shards)."""


@dataclass(frozen=True)
class MergeSize:
    """The merge's predicted peak memory, as ``fixed_mb + n_trees * mb_per_tree``.

    Attributes
    ----------
    fixed_mb : float
        What the merge holds whatever the trees (in MB): the interpreter, the held-out rows
        and their predictions, the OOB sums.
    mb_per_tree : float
        What each tree adds (in MB), decoded and encoded.
    """

    fixed_mb: float
    mb_per_tree: float

    def peak_mb(self, n_trees: int) -> int:
        """The merge's peak memory (in MB, rounded up) for a forest of ``n_trees``."""
        return math.ceil(self.fixed_mb + n_trees * self.mb_per_tree)

    def most_trees(self, memory_mb: int) -> int:
        """The most trees whose merge fits ``memory_mb`` (0 if none)."""
        if self.mb_per_tree <= 0:
            return 0 if self.fixed_mb > memory_mb else 2**31
        return max(0, math.floor((memory_mb - self.fixed_mb) / self.mb_per_tree))


def merge_size(
    *,
    encoded_bytes_per_tree: float,
    nodes_per_tree: float,
    n_values: int,
    n_test: int,
    n_features: int,
    n_train: int,
    oob: bool,
    test_whole: bool = True,
) -> MergeSize:
    """The merge's memory model for a forest of trees like the trial's.

    Parameters
    ----------
    encoded_bytes_per_tree : float
        The trial grove's encoded size per tree (in bytes).
    nodes_per_tree : float
        The trial grove's nodes per tree.
    n_values : int
        Values per node: the classes (classification), 1 (regression).
    n_test, n_features : int
        The held-out rows the merge scores, and their features.
    n_train : int
        The training rows (OOB sums are one row of values each).
    oob : bool
        Whether the merge adds the groves' OOB sums (``oob_score``).
    test_whole : bool, default=True
        Whether the held-out features are read whole; False for a split in row shards,
        which the merge scores a shard at a time (at most :data:`TEST_SHARD_MB` at once).
    """
    per_tree = ENCODED_COPIES * encoded_bytes_per_tree + nodes_per_tree * (
        SKLEARN_NODE_BYTES + 8 * n_values
    )
    features = n_test * 2 * 4 * n_features
    if not test_whole:
        features = min(features, TEST_SHARD_MB * 2**20)
    held_out = features + n_test * 8 * n_values * (MERGE_THREADS + 2)
    sums = n_train * 8 * (n_values + 1)  # a grove's sums and counts
    out_of_bag = (2 + 2 * OOB_READERS) * sums if oob else 0
    return MergeSize(
        fixed_mb=MERGE_BASELINE_MB + (held_out + out_of_bag) / 2**20,
        mb_per_tree=per_tree / 2**20,
    )

"""The pickle-free forest artifact: one format for groves and merged forests.

A blob holds the trees of one grove or one whole forest as flat arrays plus a JSON header.
Nothing in it is ever unpickled: every array is read with :func:`numpy.frombuffer` from an
allow-list of plain little-endian dtypes, after the whole blob has been checked.

File layout (all integers little-endian)::

    offset 0   8 bytes   magic b"\\x93GFOREST"
    offset 8   32 bytes  sha256 of every byte from offset 40 to the end
    offset 40  4 bytes   uint32 header length H (at most 1 MiB)
    offset 44  H bytes   ASCII JSON header (sorted keys, no spaces)
    then       zero padding to a multiple of 8 bytes: the data section starts here
    then       the arrays, in header order, each 8-byte aligned, zero padding between them

This is not an ``np.savez`` zip on purpose: a zip embeds timestamps, and reading it through
:mod:`zipfile` copies and CRC-checks every entry, whereas these arrays are used in place (zero
copy) once their bounds are checked, which is what makes loading cheap.

The header names the task, the counts (``n_trees``, ``n_nodes``, ``n_splits``, ``n_leaves``,
``n_features``, ``n_values``) and, for every array, its ``name``, ``dtype``, ``shape`` and
``offset`` (relative to the data section). Nodes keep scikit-learn's numbering inside each tree and
the trees are concatenated. Split nodes (internal nodes) and leaves are stored apart, each in node
order, so a leaf carries no split fields and a split carries no values:

- ``tree_node_count``, ``tree_max_depth``: one entry per tree.
- ``node_is_leaf``: one bit per node (:func:`numpy.packbits`).
- ``split_left``, ``split_right``: child index minus the split's own index (always >= 1, which is
  what scikit-learn's builders guarantee and what rules out cycles).
- ``split_feature``, ``split_threshold`` (float32, see below), ``split_missing_left`` (one bit per
  split), ``split_impurity``, ``split_weight`` (``weighted_n_node_samples``).
- ``leaf_value`` (``n_leaves x n_values``; class fractions or the regression value),
  ``leaf_impurity``, ``leaf_weight``.
- ``classes`` for classification, with its own dtype (numbers or unicode strings).

Integer columns use the narrowest unsigned dtype that holds them. Any column is stored either as
is or, when that is smaller, as a table of its distinct rows (``<name>.table``, compared bit for
bit) plus ``<name>.index``; a one-row table has no index (e.g. ``split_left`` is always 1 in
depth-first trees). A forest's leaf values are typically a handful of distinct rows. The encoding
is a pure function of the trees, so the same trees always give byte-identical blobs, whichever
way they were assembled (one forest, or groves merged with :meth:`Forest.concat`).

Exactness. scikit-learn casts X to float32 and tests ``x <= threshold`` against a float64
threshold. A threshold is stored as the largest float32 that is <= the float64 one (the cast,
stepped down with :func:`numpy.nextafter` where it rounded up), which leaves ``x <= t`` unchanged
for every float32 ``x``. NaN is routed by the stored ``missing_go_to_left`` bit, as scikit-learn
does. Predictions go through genuine ``sklearn.tree._tree.Tree`` objects rebuilt from the validated
arrays on first use, accumulated tree by tree exactly as scikit-learn's forests do.

Not stored: ``n_node_samples`` (neither prediction nor importances use it; rebuilt trees carry
``weighted_n_node_samples`` rounded to an integer in its place) and the values of split nodes
(only leaves are ever predicted from; rebuilt trees hold zeros there, which matters only to tools
that inspect internal nodes such as ``plot_tree``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import BaseDecisionTree
from sklearn.tree._tree import NODE_DTYPE, Tree
from sklearn.utils import check_array

from groveflow.errors import ArtifactError, InvalidPredictRequest, ModelNotFound

__all__ = [
    "FORMAT_VERSION",
    "Forest",
    "decode_trees",
    "encode_forest_file",
    "encode_trees",
    "load_forest",
]

FORMAT_VERSION: int = 1
"""Version of the blob layout written by this module; other versions are refused on load."""

_FORMAT_NAME = "groveflow.forest"
_MAGIC = b"\x93GFOREST"
_PREFIX = struct.Struct("<8s32sI")
_MAX_HEADER_BYTES = 1 << 20
_BACKGROUND_HASH_BYTES = 1 << 20
_MAX_GROWTH = 2048  # rebuilt trees may take this many times their artifact's size ...
_MIN_REBUILD_LIMIT = (
    1 << 30
)  # ... or 1 GiB, whichever is larger  # smaller blobs are hashed inline: a thread costs ~0.1 ms
_ALIGN = 8
_TREE_LEAF = -1
_TREE_UNDEFINED = -2
_TASKS = ("classification", "regression")
_MANIFEST_NAME = "manifest.json"
_BLOB_SUFFIX = ".gfa"

# Only these dtype strings are ever turned into numpy dtypes: plain numbers and unicode.
_DTYPE_PATTERN = re.compile(r"^(\|u1|<u[248]|\|i1|<i[248]|<f[48]|\|b1|<U[1-9][0-9]{0,3})$")
_UNSIGNED = ("|u1", "<u2", "<u4", "<u8")
_PACKED_BITS = ("node_is_leaf", "split_missing_left")
# Each stored column: its dtype(s) and whether it has one entry per tree, split or leaf.
_INT_COLUMNS = {
    "tree_node_count": "tree",
    "tree_max_depth": "tree",
    "split_left": "split",
    "split_right": "split",
    "split_feature": "split",
}
_FLOAT_COLUMNS = {
    "split_threshold": "<f4",
    "split_impurity": "<f8",
    "split_weight": "<f8",
    "leaf_value": "<f8",
    "leaf_impurity": "<f8",
    "leaf_weight": "<f8",
}
_FOREST_KINDS: dict[str, dict[str, type[BaseEstimator]]] = {
    "random_forest": {
        "classification": RandomForestClassifier,
        "regression": RandomForestRegressor,
    },
    "extra_trees": {"classification": ExtraTreesClassifier, "regression": ExtraTreesRegressor},
}


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class _Meta:
    """What the header says about a forest, besides where its arrays are."""

    task: str
    n_features: int
    n_values: int
    n_trees: int
    n_nodes: int
    n_splits: int
    n_leaves: int


@dataclass(frozen=True)
class _Columns:
    """The logical (decoded) columns of a forest, as described in the module docstring."""

    tree_node_count: np.ndarray
    tree_max_depth: np.ndarray
    node_is_leaf: np.ndarray
    split_left: np.ndarray
    split_right: np.ndarray
    split_feature: np.ndarray
    split_missing_left: np.ndarray
    split_threshold: np.ndarray
    split_impurity: np.ndarray
    split_weight: np.ndarray
    leaf_value: np.ndarray
    leaf_impurity: np.ndarray
    leaf_weight: np.ndarray


def n_threads_for(n_jobs: int | None) -> int:
    """Threads for ``n_jobs``, as scikit-learn counts them, from the CPUs this process may use.

    ``None`` is 1, ``-1`` every CPU, ``-k`` every CPU but ``k - 1``. The CPUs are
    ``os.sched_getaffinity``'s (a Lambda function's vCPUs), not joblib's
    ``effective_n_jobs``, which answers 1 where joblib finds no ``/dev/shm`` for its
    semaphores, as on Lambda, although threads need none.
    """
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs > 0:
        return n_jobs
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) + 1 + n_jobs)


class Forest:
    """A validated forest (or grove) loaded from an artifact, predicting exactly as scikit-learn.

    Build one with :func:`decode_trees`, :func:`load_forest` or :meth:`Forest.concat`, not
    directly. Genuine scikit-learn trees are rebuilt from the arrays on the first call that needs
    them (prediction, ``apply``, ``feature_importances_``), so loading stays cheap.

    Attributes
    ----------
    n_trees : int
        Number of trees.
    n_features_in_ : int
        Number of features the trees were fitted on.
    classes_ : ndarray of shape (n_classes,) or None
        Class labels with their original dtype (numbers or strings); None for regression.
    task : {"classification", "regression"}
        What the trees predict.
    n_jobs : int or None, default=None
        Threads used by ``predict``, ``predict_proba`` and ``apply`` (None: 1; -1: all cores).
        Threads split the rows, and each row still sums its trees in order, so the result is
        bit for bit the same for any value.
    """

    def __init__(
        self, meta: _Meta, classes: np.ndarray | None, stored: Mapping[str, np.ndarray]
    ) -> None:
        self._meta = meta
        self._stored = dict(stored)
        self._trees: list[Tree] | None = None
        self.n_trees: int = meta.n_trees
        self.n_features_in_: int = meta.n_features
        self.classes_: np.ndarray | None = classes
        self.task: str = meta.task
        self.n_jobs: int | None = None

    def __repr__(self) -> str:
        return (
            f"Forest(task={self.task!r}, n_trees={self.n_trees}, "
            f"n_features_in_={self.n_features_in_}, n_nodes={self._meta.n_nodes})"
        )

    # -- prediction ------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, bit for bit those of scikit-learn's forest on the same trees.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; cast to float32 as scikit-learn does. NaN is allowed and routed as the
            trees learned; infinity is refused.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The mean over trees of each tree's leaf class fractions (float64).

        Raises
        ------
        InvalidPredictRequest
            For a regression forest, or when X does not have ``n_features_in_`` columns.
        """
        if self.task != "classification":
            raise InvalidPredictRequest(
                "predict_proba needs a classification forest; this forest is a regression "
                "forest: use predict"
            )
        return self._mean_of_trees(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (classification) or values (regression), as scikit-learn's.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; see :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels with the dtype of ``classes_``, or float64 values for regression.
        """
        mean = self._mean_of_trees(X)
        if self.classes_ is None:
            return mean[:, 0]
        return self.classes_.take(np.argmax(mean, axis=1), axis=0)

    def apply(self, X: Any) -> np.ndarray:
        """Index of the leaf each sample reaches in each tree, as scikit-learn's ``apply``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; see :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n_samples, n_trees)
            Leaf node indices (numbered inside each tree).
        """
        X32 = self._check_X(X)
        trees = self._sklearn_trees()
        leaves = np.empty((X32.shape[0], len(trees)), dtype=np.intp)

        def apply_rows(rows: slice) -> None:
            for position, tree in enumerate(trees):
                leaves[rows, position] = tree.apply(X32[rows])

        self._for_row_chunks(X32.shape[0], apply_rows)
        return leaves

    @property
    def feature_importances_(self) -> np.ndarray:
        """Impurity-based feature importances, equal to scikit-learn's for the same trees.

        Returns
        -------
        ndarray of shape (n_features,)
            Mean of the per-tree normalized importances over trees with more than one node,
            normalized to sum to 1 (all zeros if every tree is a single leaf).
        """
        per_tree = [
            tree.compute_feature_importances()
            for tree in self._sklearn_trees()
            if tree.node_count > 1
        ]
        if not per_tree:
            return np.zeros(self.n_features_in_, dtype=np.float64)
        mean = np.asarray(np.mean(per_tree, axis=0, dtype=np.float64))
        return mean / np.sum(mean)

    def _check_X(self, X: Any) -> np.ndarray:
        X32 = check_array(X, dtype=np.float32, ensure_all_finite="allow-nan")
        if X32.shape[1] != self.n_features_in_:
            raise InvalidPredictRequest(
                f"X has {X32.shape[1]} features, but this forest was fitted on "
                f"{self.n_features_in_} features"
            )
        return X32

    def accumulate(self, X: Any, total: np.ndarray | None = None) -> np.ndarray:
        """Add every tree's prediction to ``total``, in tree order, without dividing.

        Splitting a model into consecutive groups of trees and calling this on each group in
        order, then dividing by the total tree count, gives bit for bit what the whole forest
        predicts (scikit-learn sums in float64 in tree order and divides once).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; see :meth:`predict_proba`.
        total : ndarray of shape (n_samples, n_values) or None, default=None
            Running float64 sum, updated in place; None starts from zeros.

        Returns
        -------
        ndarray of shape (n_samples, n_values)
            ``total``: class fractions summed over trees (``n_values = n_classes``), or the
            regression values summed over trees (``n_values = 1``).
        """
        X32 = self._check_X(X)
        if total is None:
            total = np.zeros((X32.shape[0], self._meta.n_values), dtype=np.float64)
        elif total.shape != (X32.shape[0], self._meta.n_values) or total.dtype != np.float64:
            raise ValueError(
                f"total must be a float64 array of shape {(X32.shape[0], self._meta.n_values)}, "
                f"got {total.dtype} {total.shape}"
            )
        trees = self._sklearn_trees()

        def sum_rows(rows: slice) -> None:
            part = total[rows]
            for tree in trees:
                part += tree.predict(X32[rows])

        self._for_row_chunks(X32.shape[0], sum_rows)
        return total

    def tree_predictions(self, X: Any) -> Iterator[np.ndarray]:
        """Each tree's prediction, in tree order (grove order for a merged forest).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; see :meth:`predict_proba`.

        Yields
        ------
        ndarray of shape (n_samples, n_values)
            One tree's class fractions, or its regression values (``n_values = 1``).
        """
        X32 = self._check_X(X)
        for tree in self._sklearn_trees():
            yield tree.predict(X32)

    def _mean_of_trees(self, X: Any) -> np.ndarray:
        # scikit-learn's _accumulate_prediction: a float64 sum in tree order, then one division.
        total = self.accumulate(X)
        total /= self.n_trees
        return total

    def _for_row_chunks(self, n_rows: int, work: Callable[[slice], None]) -> None:
        """Run ``work`` on contiguous row ranges, one per thread (scikit-learn's tree code
        releases the GIL); with one thread, on all rows at once."""
        n_threads = min(n_threads_for(self.n_jobs), max(n_rows, 1))
        if n_threads == 1:
            work(slice(0, n_rows))
            return
        bounds = np.linspace(0, n_rows, n_threads + 1).astype(int)
        chunks = [slice(int(start), int(stop)) for start, stop in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, chunks))

    def _sklearn_trees(self) -> list[Tree]:
        if self._trees is None:
            self._trees = _build_sklearn_trees(self._meta, self._stored)
        return self._trees

    def _columns(self) -> _Columns:
        return _decode_columns(self._meta, self._stored)

    # -- conversion ------------------------------------------------------------------

    def to_sklearn(self, kind: str = "random_forest", params: dict | None = None) -> BaseEstimator:
        """A genuine fitted scikit-learn forest holding these trees.

        Parameters
        ----------
        kind : {"random_forest", "extra_trees"}, default="random_forest"
            Which scikit-learn forest class to return (``RandomForestClassifier`` /
            ``RandomForestRegressor`` or ``ExtraTreesClassifier`` / ``ExtraTreesRegressor``).
        params : dict or None, default=None
            Constructor parameters of that class (``n_estimators`` is set to ``n_trees``).

        Returns
        -------
        BaseEstimator
            A fitted forest whose ``predict``, ``predict_proba``, ``apply`` and
            ``feature_importances_`` equal this forest's.

        Raises
        ------
        ValueError
            If ``kind`` is not one of the accepted names.
        """
        if kind not in _FOREST_KINDS:
            raise ValueError(f"kind={kind!r} is not supported; use one of {sorted(_FOREST_KINDS)}")
        forest: Any = _FOREST_KINDS[kind][self.task](**(params or {}))
        forest.set_params(n_estimators=self.n_trees)
        trees = _build_sklearn_trees(self._meta, self._stored)
        forest.estimators_ = [self._sklearn_tree_estimator(forest, tree) for tree in trees]
        forest.estimator_ = clone(forest.estimator)
        forest.n_features_in_ = self.n_features_in_
        forest.n_outputs_ = 1
        if self.classes_ is not None:
            forest.classes_ = self.classes_.copy()
            forest.n_classes_ = len(self.classes_)
        return forest

    def _sklearn_tree_estimator(self, forest: Any, tree: Tree) -> Any:
        estimator: Any = clone(forest.estimator)
        estimator.set_params(**{name: getattr(forest, name) for name in forest.estimator_params})
        estimator.tree_ = tree
        estimator.n_features_in_ = self.n_features_in_
        estimator.n_outputs_ = 1
        estimator.max_features_ = _resolved_max_features(
            estimator.max_features, self.n_features_in_
        )
        if self.classes_ is not None:
            # A forest fits its trees on class indices, which are float64.
            estimator.classes_ = np.arange(len(self.classes_), dtype=np.float64)
            estimator.n_classes_ = len(self.classes_)
        return estimator

    @classmethod
    def concat(cls, forests: Sequence[Forest]) -> Forest:
        """Merge groves into one forest, keeping the trees in the given order.

        Parameters
        ----------
        forests : sequence of Forest
            Groves (or forests) of the same task, feature count and classes.

        Returns
        -------
        Forest
            A forest holding every tree of every input.

        Raises
        ------
        ArtifactError
            If ``forests`` is empty or the inputs disagree on task, ``n_features_in_`` or
            ``classes_`` (the message names the first mismatch).
        """
        if not forests:
            raise ArtifactError("cannot concatenate an empty list of forests")
        first = forests[0]
        for position, other in enumerate(forests[1:], start=1):
            _check_same_model(first, other, position)
        metas = [forest._meta for forest in forests]
        meta = replace(
            first._meta,
            **{
                count: sum(getattr(m, count) for m in metas)
                for count in ("n_trees", "n_nodes", "n_splits", "n_leaves")
            },
        )
        return Forest(meta, first.classes_, _concat_stored(forests))


def _concat_stored(parts: Sequence[Forest]) -> dict[str, np.ndarray]:
    """The stored arrays of ``parts``' trees one after the other, as :func:`_encode_columns`
    would store their concatenated columns (the same bytes), mostly without decoding them:
    a column every part stores as a table is merged table by table and re-indexed."""
    stored: dict[str, np.ndarray] = {}
    for name, count in (("node_is_leaf", "n_nodes"), ("split_missing_left", "n_splits")):
        bits = [np.unpackbits(p._stored[name], count=getattr(p._meta, count)) for p in parts]
        stored[name] = np.packbits(np.concatenate(bits))
    for name, per in _INT_COLUMNS.items():
        stored.update(_concat_column(name, per, None, parts))
    for name, dtype in _FLOAT_COLUMNS.items():
        stored.update(_concat_column(name, name.split("_")[0], np.dtype(dtype), parts))
    return stored


def _concat_column(
    name: str, per: str, dtype: np.dtype | None, parts: Sequence[Forest]
) -> dict[str, np.ndarray]:
    """One column of :func:`_concat_stored`; ``dtype`` None for integer columns, which are
    stored in the narrowest unsigned type that holds them."""
    counts = [_rows_per(part._meta, per) for part in parts]
    if not all(f"{name}.table" in part._stored for part in parts):
        pieces = [_column(p._stored, name, 0, n) for p, n in zip(parts, counts, strict=True)]
        if dtype is None:
            values = _narrowest_unsigned(np.concatenate([p.astype(np.int64) for p in pieces]))
        else:
            values = np.concatenate(pieces).astype(dtype)
        return _table_or_raw(name, values)
    tables = [part._stored[f"{name}.table"] for part in parts]
    if dtype is None:
        table = _narrowest_unsigned(np.concatenate([t.astype(np.int64) for t in tables]))
    else:
        table = np.concatenate(tables).astype(dtype)
    width = table.dtype.itemsize
    bits = np.ascontiguousarray(table).view(f"<u{width}").reshape(len(table), -1)
    distinct_bits, position = _distinct_rows(bits)
    offsets = np.cumsum([0, *(len(t) for t in tables[:-1])])
    index = np.concatenate(
        [
            position[part._stored.get(f"{name}.index", np.zeros(n)).astype(np.int64) + offset]
            for part, n, offset in zip(parts, counts, offsets, strict=True)
        ]
    )
    distinct = distinct_bits.view(table.dtype).reshape((-1, *table.shape[1:]))
    return _table_or_index(name, distinct, index)


def _concat_columns(parts: Sequence[_Columns]) -> _Columns:
    """The trees of ``parts`` one after the other (every column is in tree order)."""
    return _Columns(
        **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in _Columns.__dataclass_fields__
        }
    )


def _rows_per(meta: _Meta, per: str) -> int:
    return {"tree": meta.n_trees, "split": meta.n_splits, "leaf": meta.n_leaves}[per]


def _check_same_model(first: Forest, other: Forest, position: int) -> None:
    if other.task != first.task:
        raise ArtifactError(
            f"cannot concatenate forests: forests[{position}] is a {other.task} forest, "
            f"forests[0] a {first.task} forest"
        )
    if other.n_features_in_ != first.n_features_in_:
        raise ArtifactError(
            f"cannot concatenate forests: forests[{position}] has n_features_in_="
            f"{other.n_features_in_}, forests[0] has n_features_in_={first.n_features_in_}"
        )
    if first.classes_ is None or other.classes_ is None:
        return
    same = first.classes_.dtype.kind == other.classes_.dtype.kind and np.array_equal(
        first.classes_, other.classes_
    )
    if not same:
        raise ArtifactError(
            f"cannot concatenate forests: forests[{position}] has classes_="
            f"{other.classes_!r}, forests[0] has classes_={first.classes_!r}"
        )


def _resolved_max_features(max_features: Any, n_features: int) -> int:
    """The integer ``max_features_`` scikit-learn's tree ``fit`` derives from ``max_features``."""
    if max_features is None:
        return n_features
    if max_features == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if max_features == "log2":
        return max(1, int(np.log2(n_features)))
    if isinstance(max_features, int | np.integer):
        return int(max_features)
    return max(1, int(float(max_features) * n_features))


# --------------------------------------------------------------------------- encoding


def encode_trees(
    trees: Sequence[BaseDecisionTree], *, n_features: int, classes: np.ndarray | None
) -> bytes:
    """Serialize fitted scikit-learn trees (one grove or a whole forest) into one blob.

    Parameters
    ----------
    trees : sequence of fitted DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier
        or ExtraTreeRegressor
        The trees, e.g. a forest's ``estimators_``; all classifiers or all regressors, with one
        output.
    n_features : int
        Number of features the trees were fitted on.
    classes : ndarray of shape (n_classes,) or None
        The forest's ``classes_`` (numbers or strings) for classifiers; None for regressors.

    Returns
    -------
    bytes
        The artifact; the same trees always give the same bytes.

    Raises
    ------
    ArtifactError
        If the trees cannot be stored (unfitted, multi-output, not matching ``n_features`` or
        ``classes``, classes of an unsupported dtype).
    """
    return encode_forest_file(_forest_from_trees(trees, n_features=n_features, classes=classes))


def encode_forest_file(forest: Forest) -> bytes:
    """Serialize a :class:`Forest` (e.g. merged groves) into one blob.

    Parameters
    ----------
    forest : Forest
        The forest to write.

    Returns
    -------
    bytes
        The artifact, byte-identical to ``encode_trees`` of the same trees.
    """
    meta = forest._meta
    header: dict[str, Any] = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "task": meta.task,
        "n_features": meta.n_features,
        "n_values": meta.n_values,
        "n_trees": meta.n_trees,
        "n_nodes": meta.n_nodes,
        "n_splits": meta.n_splits,
        "n_leaves": meta.n_leaves,
    }
    arrays = dict(forest._stored)
    if forest.classes_ is not None:
        arrays["classes"] = forest.classes_
    return _seal(header, arrays)


def _seal(header: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    entries = []
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        entries.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        )
        data = array.tobytes()
        padding = -len(data) % _ALIGN
        chunks.append(data + b"\0" * padding)
        offset += len(data) + padding
    text = json.dumps({**header, "arrays": entries}, sort_keys=True, separators=(",", ":"))
    header_bytes = text.encode("ascii")
    start = _PREFIX.size + len(header_bytes)
    body = (
        struct.pack("<I", len(header_bytes))
        + header_bytes
        + b"\0" * (-start % _ALIGN)
        + b"".join(chunks)
    )
    return _MAGIC + hashlib.sha256(body).digest() + body


def _forest_from_trees(
    trees: Sequence[BaseDecisionTree], *, n_features: int, classes: np.ndarray | None
) -> Forest:
    if len(trees) == 0:
        raise ArtifactError("cannot encode an empty list of trees")
    stored_classes = None if classes is None else _storable_classes(classes)
    task = "regression" if stored_classes is None else "classification"
    n_values = 1 if stored_classes is None else len(stored_classes)
    for position, tree in enumerate(trees):
        _check_tree(tree, position, task=task, n_features=n_features, n_values=n_values)
    columns = _concat_columns([_tree_columns(tree.tree_) for tree in trees])
    return _forest_from_columns(task, n_features, n_values, stored_classes, columns)


def _storable_classes(classes: Any) -> np.ndarray:
    array = np.asarray(classes)
    if array.dtype == object and all(isinstance(label, str) for label in array.ravel()):
        array = array.astype(str)
    if array.ndim != 1 or len(array) == 0:
        raise ArtifactError(f"classes must be a non-empty 1-d array, got shape {array.shape}")
    if array.dtype.kind not in "biufU":
        raise ArtifactError(
            f"classes of dtype {array.dtype} cannot be stored; use numbers or unicode strings"
        )
    if len(np.unique(array)) != len(array):
        raise ArtifactError(f"classes must be distinct, got {array!r}")
    return array.astype(array.dtype.newbyteorder("<"))


def _check_tree(tree: Any, position: int, *, task: str, n_features: int, n_values: int) -> None:
    if not isinstance(tree, BaseDecisionTree) or not hasattr(tree, "tree_"):
        raise ArtifactError(
            f"trees[{position}] is {type(tree).__name__}; expected a fitted scikit-learn "
            "decision tree (DecisionTree*/ExtraTree*)"
        )
    if (task == "classification") != is_classifier(tree):
        raise ArtifactError(
            f"trees[{position}] is a {type(tree).__name__}, which does not fit a {task} "
            "artifact (pass classes for classifiers, classes=None for regressors)"
        )
    raw = tree.tree_
    if raw.n_outputs != 1:
        raise ArtifactError(f"trees[{position}] has {raw.n_outputs} outputs; only 1 is supported")
    if raw.n_features != n_features:
        raise ArtifactError(
            f"trees[{position}] was fitted on {raw.n_features} features, "
            f"not n_features={n_features}"
        )
    if raw.max_n_classes != n_values:
        raise ArtifactError(
            f"trees[{position}] predicts {raw.max_n_classes} values per sample, but "
            f"{n_values} were expected from classes"
        )


def _tree_columns(raw: Tree) -> _Columns:
    state = raw.__getstate__()
    nodes = state["nodes"]
    is_leaf = nodes["left_child"] == _TREE_LEAF
    split = ~is_leaf
    index = np.arange(len(nodes), dtype=np.int64)
    return _Columns(
        tree_node_count=np.array([len(nodes)], dtype=np.int64),
        tree_max_depth=np.array([state["max_depth"]], dtype=np.int64),
        node_is_leaf=is_leaf,
        split_left=nodes["left_child"][split] - index[split],
        split_right=nodes["right_child"][split] - index[split],
        split_feature=nodes["feature"][split],
        split_missing_left=nodes["missing_go_to_left"][split].astype(bool),
        split_threshold=_thresholds_as_float32(nodes["threshold"][split]),
        split_impurity=nodes["impurity"][split],
        split_weight=nodes["weighted_n_node_samples"][split],
        leaf_value=state["values"][is_leaf, 0, :],
        leaf_impurity=nodes["impurity"][is_leaf],
        leaf_weight=nodes["weighted_n_node_samples"][is_leaf],
    )


def _thresholds_as_float32(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: ``x <= t`` is unchanged for float32 x."""
    with np.errstate(over="ignore"):
        rounded = thresholds.astype(np.float32)
    rounded_up = rounded.astype(np.float64) > thresholds
    rounded[rounded_up] = np.nextafter(rounded[rounded_up], np.float32(-np.inf))
    return rounded


def _forest_from_columns(
    task: str, n_features: int, n_values: int, classes: np.ndarray | None, columns: _Columns
) -> Forest:
    n_leaves = int(columns.node_is_leaf.sum())
    meta = _Meta(
        task=task,
        n_features=n_features,
        n_values=n_values,
        n_trees=len(columns.tree_node_count),
        n_nodes=len(columns.node_is_leaf),
        n_splits=len(columns.node_is_leaf) - n_leaves,
        n_leaves=n_leaves,
    )
    return Forest(meta, classes, _encode_columns(columns))


def _encode_columns(columns: _Columns) -> dict[str, np.ndarray]:
    stored: dict[str, np.ndarray] = {}
    for name in _PACKED_BITS:
        stored[name] = np.packbits(getattr(columns, name))
    for name in _INT_COLUMNS:
        stored.update(_table_or_raw(name, _narrowest_unsigned(getattr(columns, name))))
    for name, dtype in _FLOAT_COLUMNS.items():
        stored.update(_table_or_raw(name, getattr(columns, name).astype(dtype)))
    return stored


def _narrowest_unsigned(values: np.ndarray) -> np.ndarray:
    largest = int(values.max()) if len(values) else 0
    for dtype in _UNSIGNED:
        if largest <= np.iinfo(np.dtype(dtype)).max:
            return values.astype(dtype)
    raise ArtifactError(f"value {largest} does not fit in 64 bits")  # pragma: no cover


def _table_or_raw(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """Store a column as is, or as its distinct rows plus indices when that is smaller.

    Rows are compared bit for bit. A column with a single distinct row is stored as that row
    alone (``<name>.table`` of length 1, no ``<name>.index``).
    """
    if len(values) == 0:
        return {name: values}
    width = values.dtype.itemsize
    rows = np.ascontiguousarray(values).view(f"<u{width}").reshape(len(values), -1)
    table_bits, index = _distinct_rows(rows)
    table = table_bits.view(values.dtype).reshape((-1, *values.shape[1:]))
    return _table_or_index(name, table, index, values)


def _table_or_index(
    name: str, table: np.ndarray, index: np.ndarray, values: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The smaller way to store ``table[index]`` (``values``, if already at hand)."""
    if len(table) == 1:
        return {f"{name}.table": table}
    narrow_index = _narrowest_unsigned(index)
    if table.nbytes + narrow_index.nbytes >= len(index) * table[:1].nbytes:
        return {name: values if values is not None else np.take(table, index, axis=0)}
    return {f"{name}.table": table, f"{name}.index": narrow_index}


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-d unsigned array (sorted) and the position of each row in them.

    Same result as ``np.unique(rows, axis=0, return_inverse=True)``, many times faster:
    a single row repeated is found in one pass, a column of 8 or 16 bits is counted, a
    wider column is a 1-d ``np.unique``, and rows of several columns are grouped by a
    64-bit hash whose groups are then checked row by row (a collision falls back to
    sorting every column).
    """
    if len(rows) and bool((rows == rows[0]).all()):
        return rows[:1].copy(), np.zeros(len(rows), dtype=np.int64)
    if rows.shape[1] == 1 and rows.dtype.itemsize <= 2:
        present = np.zeros(1 << (8 * rows.dtype.itemsize), dtype=bool)
        present[rows[:, 0]] = True
        table = np.flatnonzero(present).astype(rows.dtype)
        position = np.cumsum(present, dtype=np.int64) - 1
        return table.reshape(-1, 1), position[rows[:, 0]]
    if rows.shape[1] == 1:
        table, index = np.unique(rows[:, 0], return_inverse=True)
        return table.reshape(-1, 1), index.astype(np.int64, copy=False)
    return _distinct_wide_rows(rows)


_ROW_HASH_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def _distinct_wide_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = rows.astype(np.uint64, copy=False)
    hashed = np.zeros(len(rows), dtype=np.uint64)
    for column in range(words.shape[1]):
        multiplier = _ROW_HASH_MULTIPLIERS[column % len(_ROW_HASH_MULTIPLIERS)]
        hashed = (hashed ^ words[:, column]) * multiplier  # wraps modulo 2**64
    _, first, group = np.unique(hashed, return_index=True, return_inverse=True)
    candidates = rows[first]
    if not np.array_equal(candidates[group], rows):  # a hash collision: sort instead
        return _distinct_rows_by_sorting(rows)
    order = np.lexsort(candidates.T[::-1])  # the table in row order, as np.unique gives it
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return candidates[order], position[group]


def _distinct_rows_by_sorting(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts_group = np.ones(len(rows), dtype=bool)
    starts_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    index = np.empty(len(rows), dtype=np.int64)
    index[order] = np.cumsum(starts_group) - 1
    return ordered[starts_group], index


def _column(stored: Mapping[str, np.ndarray], name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a stored column, whichever way it is stored (see _table_or_raw)."""
    if name in stored:
        return stored[name][start:stop]
    table = stored[f"{name}.table"]
    index = stored.get(f"{name}.index")
    if index is None:
        return np.repeat(table, stop - start, axis=0)
    return np.take(table, index[start:stop], axis=0)


# --------------------------------------------------------------------------- decoding


def decode_trees(blob: bytes) -> Forest:
    """Read and fully validate an artifact written by :func:`encode_trees`.

    Every check runs before any array is used: the sha256, the header's schema, each array's
    dtype, shape and bounds, every child index (inside its tree and greater than its parent's),
    every feature index (below ``n_features``) and every table index.

    Parameters
    ----------
    blob : bytes
        The artifact.

    Returns
    -------
    Forest
        The validated forest.

    Raises
    ------
    ArtifactError
        If the blob is truncated, corrupted, of another format version, or inconsistent; the
        message says which check failed.
    """
    return _decode(blob, verify_checksum=True)


def _decode(blob: bytes, *, verify_checksum: bool) -> Forest:
    """Validate and wrap a blob; ``verify_checksum=False`` only after hashing the whole blob."""
    if not isinstance(blob, bytes):
        blob = bytes(blob)  # the forest keeps views of the blob: it must not change under it
    view = memoryview(blob).cast("B")
    if len(view) < _PREFIX.size:
        raise ArtifactError(
            f"artifact is {len(view)} bytes, shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, digest, _ = _PREFIX.unpack_from(view)
    if magic != _MAGIC:
        raise ArtifactError(f"not a groveflow forest artifact (magic {bytes(magic)!r})")
    # The checksum is computed on another core while the structure is checked: the checks are
    # written for hostile input anyway, and a mismatch wins over whatever they found.
    if not verify_checksum:
        content_digest: Callable[[], bytes] = lambda: digest  # noqa: E731
    elif len(view) < _BACKGROUND_HASH_BYTES:
        content_digest = hashlib.sha256(view[40:]).digest
    else:
        content_digest = _sha256_in_background(view[40:])
    try:
        forest = _validated_forest(view)
    except ArtifactError:
        _check_digest(content_digest(), digest)
        raise
    _check_digest(content_digest(), digest)
    return forest


def _sha256_in_background(data: memoryview) -> Callable[[], bytes]:
    """Start hashing ``data`` (hashlib releases the GIL); the returned call waits for the digest."""
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(hashlib.sha256(data).digest()))
    worker.start()

    def digest() -> bytes:
        worker.join()
        return result[0]

    return digest


def _check_digest(actual: bytes, expected: bytes) -> None:
    if actual != expected:
        raise ArtifactError("artifact checksum mismatch: the sha256 of its content is wrong")


def _validated_forest(view: memoryview) -> Forest:
    header, data_start = _read_header(view)
    meta = _read_meta(header)
    arrays = _read_arrays(view, header, data_start)
    classes = _check_classes(meta, arrays.pop("classes", None))
    _check_array_names(meta, arrays)
    _check_rebuild_size(meta, len(view))
    _check_structure(meta, arrays)
    return Forest(meta, classes, arrays)


def _read_header(view: memoryview) -> tuple[dict[str, Any], int]:
    (header_length,) = struct.unpack_from("<I", view, 40)
    if header_length > min(_MAX_HEADER_BYTES, len(view) - _PREFIX.size):
        raise ArtifactError(f"header length {header_length} exceeds the artifact or 1 MiB")
    try:
        header = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + header_length]))
    except (ValueError, RecursionError) as error:
        raise ArtifactError(f"artifact header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"artifact header must be a JSON object, got {type(header).__name__}")
    start = _PREFIX.size + header_length
    return header, start + (-start % _ALIGN)


def _read_meta(header: dict[str, Any]) -> _Meta:
    if header.get("format") != _FORMAT_NAME:
        raise ArtifactError(f"header format is {header.get('format')!r}, not {_FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"format_version {header.get('format_version')!r} is not supported "
            f"(this groveflow reads version {FORMAT_VERSION})"
        )
    task = header.get("task")
    if task not in _TASKS:
        raise ArtifactError(f"header task {task!r} is not one of {_TASKS}")
    counts = {
        name: _header_int(header, name, minimum)
        for name, minimum in (
            ("n_features", 1),
            ("n_values", 1),
            ("n_trees", 1),
            ("n_nodes", 1),
            ("n_splits", 0),
            ("n_leaves", 1),
        )
    }
    meta = _Meta(task=task, **counts)
    if (
        meta.n_nodes != meta.n_splits + meta.n_leaves
        or meta.n_leaves != meta.n_splits + meta.n_trees
    ):
        raise ArtifactError(
            f"header counts are inconsistent: n_nodes={meta.n_nodes}, n_splits={meta.n_splits}, "
            f"n_leaves={meta.n_leaves}, n_trees={meta.n_trees} (binary trees need "
            "n_nodes = n_splits + n_leaves and n_leaves = n_splits + n_trees)"
        )
    if task == "regression" and meta.n_values != 1:
        raise ArtifactError(f"a regression artifact has n_values=1, not {meta.n_values}")
    return meta


def _header_int(header: dict[str, Any], name: str, minimum: int) -> int:
    value = header.get(name)
    if type(value) is not int or not minimum <= value < 2**40:
        raise ArtifactError(f"header {name}={value!r} must be an integer in [{minimum}, 2**40)")
    return value


def _read_arrays(
    view: memoryview, header: dict[str, Any], data_start: int
) -> dict[str, np.ndarray]:
    entries = header.get("arrays")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ArtifactError("header arrays must be a list of objects")
    arrays: dict[str, np.ndarray] = {}
    end = data_start
    for entry in entries:
        name, dtype, shape, offset = _array_entry(entry)
        if name in arrays:
            raise ArtifactError(f"array {name!r} is listed twice")
        start = data_start + offset
        n_bytes = math.prod(shape) * dtype.itemsize
        if start < end or start + n_bytes > len(view):
            raise ArtifactError(
                f"array {name!r} ({n_bytes} bytes at offset {offset}) overlaps another array "
                f"or runs past the end of the {len(view)}-byte artifact"
            )
        arrays[name] = np.frombuffer(
            view, dtype=dtype, count=n_bytes // dtype.itemsize, offset=start
        ).reshape(shape)
        end = start + n_bytes
    return arrays


def _array_entry(entry: dict[str, Any]) -> tuple[str, np.dtype, tuple[int, ...], int]:
    name, dtype, shape, offset = (entry.get(key) for key in ("name", "dtype", "shape", "offset"))
    if not isinstance(name, str) or len(name) > 64:
        raise ArtifactError(f"array name {name!r} must be a short string")
    if not isinstance(dtype, str) or not _DTYPE_PATTERN.match(dtype):
        raise ArtifactError(f"array {name!r} has dtype {dtype!r}, which is not allowed")
    valid_shape = (
        isinstance(shape, list)
        and len(shape) <= 2
        and all(type(size) is int and 0 <= size < 2**40 for size in shape)
    )
    if not valid_shape:
        raise ArtifactError(f"array {name!r} has shape {shape!r}; expected up to 2 sizes >= 0")
    if type(offset) is not int or offset < 0 or offset % _ALIGN:
        raise ArtifactError(f"array {name!r} has offset {offset!r}; expected a multiple of 8")
    return name, np.dtype(dtype), tuple(shape or ()), offset


def _check_classes(meta: _Meta, classes: np.ndarray | None) -> np.ndarray | None:
    if meta.task == "regression":
        if classes is not None:
            raise ArtifactError("a regression artifact must not hold classes")
        return None
    if classes is None or classes.shape != (meta.n_values,) or classes.dtype.kind not in "biufU":
        raise ArtifactError(
            f"classes must be a 1-d array of {meta.n_values} numbers or strings, got "
            f"{None if classes is None else (classes.dtype.str, classes.shape)}"
        )
    if classes.dtype.kind == "U":
        code_points = classes.view("<u4")
        if np.any((code_points >= 0x110000) | ((code_points >= 0xD800) & (code_points < 0xE000))):
            raise ArtifactError("classes hold invalid unicode code points")
    if len(np.unique(classes)) != len(classes):
        raise ArtifactError("classes must be distinct")
    return classes


def _expected_arrays(meta: _Meta) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """Allowed dtypes and exact shape of each logical column, given the header's counts."""
    rows = {"tree": meta.n_trees, "split": meta.n_splits, "leaf": meta.n_leaves}
    expected: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
        "node_is_leaf": (("|u1",), (-(-meta.n_nodes // 8),)),
        "split_missing_left": (("|u1",), (-(-meta.n_splits // 8),)),
    }
    for name, per in _INT_COLUMNS.items():
        expected[name] = (_UNSIGNED, (rows[per],))
    for name, dtype in _FLOAT_COLUMNS.items():
        count = rows[name.split("_")[0]]
        expected[name] = ((dtype,), (count, meta.n_values) if name == "leaf_value" else (count,))
    return expected


def _check_array_names(meta: _Meta, arrays: dict[str, np.ndarray]) -> None:
    seen = set()
    for name, (dtypes, shape) in _expected_arrays(meta).items():
        if name in arrays:
            _check_array(name, arrays[name], dtypes, shape)
            seen.add(name)
        elif name not in _PACKED_BITS and f"{name}.table" in arrays:
            seen.update(_check_table(name, arrays, dtypes, shape))
        else:
            raise ArtifactError(f"artifact lacks array {name!r}")
    unknown = sorted(set(arrays) - seen)
    if unknown:
        raise ArtifactError(f"artifact holds unexpected arrays {unknown}")


def _check_table(
    name: str, arrays: dict[str, np.ndarray], dtypes: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[str, ...]:
    """Check a column stored as a table (plus an index unless the table has one row)."""
    table = arrays[f"{name}.table"]
    if table.ndim != len(shape) or table.shape[0] < 1:
        raise ArtifactError(f"{name}.table has shape {table.shape}; expected {len(shape)}-d rows")
    _check_array(f"{name}.table", table, dtypes, (len(table), *shape[1:]))
    index = arrays.get(f"{name}.index")
    if index is None:
        if len(table) != 1:
            raise ArtifactError(f"{name}.table has {len(table)} rows but no {name}.index")
        return (f"{name}.table",)
    _check_array(f"{name}.index", index, _UNSIGNED, shape[:1])
    if len(index) and int(index.max()) >= len(table):
        raise ArtifactError(
            f"{name}.index holds {int(index.max())}, outside its {len(table)}-row table"
        )
    return (f"{name}.table", f"{name}.index")


def _check_array(
    name: str, array: np.ndarray, dtypes: tuple[str, ...], shape: tuple[int, ...]
) -> None:
    if array.dtype.str not in dtypes:
        raise ArtifactError(f"array {name!r} has dtype {array.dtype.str}; expected one of {dtypes}")
    if array.shape != shape:
        raise ArtifactError(f"array {name!r} has shape {array.shape}; expected {shape}")


def _check_rebuild_size(meta: _Meta, artifact_bytes: int) -> None:
    """Refuse headers whose trees would need far more memory than their artifact could hold.

    One-row tables let a small artifact declare many nodes and classes; rebuilding scikit-learn
    trees allocates ``n_nodes * (64 + 8 * n_values)`` bytes, and feature importances
    ``8 * n_trees * n_features``. Genuine forests stay well within ``_MAX_GROWTH`` times their
    artifact's size (about 12x for 5 classes, 1000x for some 1,500 classes).
    """
    needed = meta.n_nodes * (NODE_DTYPE.itemsize + 8 * meta.n_values)
    needed += 8 * meta.n_trees * meta.n_features
    if needed > max(_MIN_REBUILD_LIMIT, _MAX_GROWTH * artifact_bytes):
        raise ArtifactError(
            f"the header declares trees needing {needed:,} bytes in memory "
            f"(n_nodes={meta.n_nodes}, n_values={meta.n_values}, n_features={meta.n_features}), "
            f"more than {_MAX_GROWTH}x this {artifact_bytes:,}-byte artifact"
        )


def _check_structure(meta: _Meta, arrays: dict[str, np.ndarray]) -> None:
    counts = _column(arrays, "tree_node_count", 0, meta.n_trees)
    node_count = _bounded("tree_node_count", counts, meta.n_nodes + 1)
    if np.any(node_count < 1) or int(node_count.sum()) != meta.n_nodes:
        raise ArtifactError(
            f"tree node counts must be >= 1 and sum to n_nodes={meta.n_nodes}, "
            f"got a sum of {int(node_count.sum())}"
        )
    depths = _column(arrays, "tree_max_depth", 0, meta.n_trees)
    if np.any(_bounded("tree_max_depth", depths, meta.n_nodes) >= node_count):
        raise ArtifactError("a tree's max_depth must be smaller than its node count")
    is_leaf = np.unpackbits(arrays["node_is_leaf"], count=meta.n_nodes).view(bool)
    split_node = np.flatnonzero(~is_leaf)
    node_end = np.cumsum(node_count)
    # A binary tree of n nodes has (n - 1) / 2 splits: the rest of the code relies on it.
    splits_per_tree = np.diff(np.searchsorted(split_node, node_end), prepend=0)
    if np.any(node_count != 2 * splits_per_tree + 1):
        raise ArtifactError("every tree must have exactly one more leaf than splits")
    tree_end = np.repeat(node_end, splits_per_tree)
    for side in ("split_left", "split_right"):
        delta = _bounded(side, _column(arrays, side, 0, meta.n_splits), meta.n_nodes)
        if len(delta) and (delta.min() < 1 or np.any(split_node + delta >= tree_end)):
            raise ArtifactError(
                f"{side} holds a child index outside its tree or not after its parent"
            )
    _bounded("split_feature", _column(arrays, "split_feature", 0, meta.n_splits), meta.n_features)


def _bounded(name: str, values: np.ndarray, bound: int) -> np.ndarray:
    """``values`` as int64 after checking each is below ``bound`` (unsigned, so never negative)."""
    if len(values) and int(values.max()) >= bound:
        raise ArtifactError(f"{name} holds {int(values.max())}, which must be below {bound}")
    return values.astype(np.int64)


def _decode_columns(meta: _Meta, stored: Mapping[str, np.ndarray]) -> _Columns:
    rows = {"tree": meta.n_trees, "split": meta.n_splits, "leaf": meta.n_leaves}
    decoded = {
        name: _column(stored, name, 0, rows[per]).astype(np.int64)
        for name, per in _INT_COLUMNS.items()
    }
    decoded["node_is_leaf"] = np.unpackbits(stored["node_is_leaf"], count=meta.n_nodes).view(bool)
    decoded["split_missing_left"] = np.unpackbits(
        stored["split_missing_left"], count=meta.n_splits
    ).view(bool)
    for name in _FLOAT_COLUMNS:
        decoded[name] = _column(stored, name, 0, rows[name.split("_")[0]])
    return _Columns(**decoded)


def _build_sklearn_trees(meta: _Meta, stored: Mapping[str, np.ndarray]) -> list[Tree]:
    """Genuine scikit-learn trees from validated arrays (never call it before validation).

    Trees are built one at a time so the temporary arrays stay the size of one tree.
    """
    is_leaf = np.unpackbits(stored["node_is_leaf"], count=meta.n_nodes).view(bool)
    missing_left = np.unpackbits(stored["split_missing_left"], count=meta.n_splits)
    node_count = _column(stored, "tree_node_count", 0, meta.n_trees).astype(np.int64)
    max_depth = _column(stored, "tree_max_depth", 0, meta.n_trees).astype(np.int64)
    node_end = np.cumsum(node_count)
    split_end = np.cumsum(node_count // 2)
    leaf_end = node_end - split_end
    trees = []
    for tree in range(meta.n_trees):
        nodes = slice(int(node_end[tree] - node_count[tree]), int(node_end[tree]))
        splits = slice(int(split_end[tree] - node_count[tree] // 2), int(split_end[tree]))
        leaves = slice(int(leaf_end[tree] - node_count[tree] // 2 - 1), int(leaf_end[tree]))
        state = _tree_state(
            meta,
            stored,
            is_leaf=is_leaf[nodes],
            missing_left=missing_left[splits],
            splits=splits,
            leaves=leaves,
        )
        state["max_depth"] = int(max_depth[tree])
        sklearn_tree = Tree(meta.n_features, np.array([meta.n_values], dtype=np.intp), 1)
        sklearn_tree.__setstate__(state)
        trees.append(sklearn_tree)
    return trees


def _tree_state(
    meta: _Meta,
    stored: Mapping[str, np.ndarray],
    *,
    is_leaf: np.ndarray,
    missing_left: np.ndarray,
    splits: slice,
    leaves: slice,
) -> dict[str, Any]:
    """The ``__setstate__`` dictionary of one scikit-learn tree (without ``max_depth``)."""

    def split_column(name: str) -> np.ndarray:
        return _column(stored, name, splits.start, splits.stop)

    def leaf_column(name: str) -> np.ndarray:
        return _column(stored, name, leaves.start, leaves.stop)

    # Integer positions, not boolean masks: scattering through them is several times faster.
    split_node = np.flatnonzero(~is_leaf)
    leaf_node = np.flatnonzero(is_leaf)
    nodes = np.zeros(len(is_leaf), dtype=NODE_DTYPE)

    def put(field: str, at_splits: Any, at_leaves: Any) -> None:
        column = nodes[field]
        column[split_node] = at_splits
        column[leaf_node] = at_leaves

    put("left_child", split_node + split_column("split_left"), _TREE_LEAF)
    put("right_child", split_node + split_column("split_right"), _TREE_LEAF)
    put("feature", split_column("split_feature"), _TREE_UNDEFINED)
    put("threshold", split_column("split_threshold"), _TREE_UNDEFINED)
    put("missing_go_to_left", missing_left, 0)
    put("impurity", split_column("split_impurity"), leaf_column("leaf_impurity"))
    put("weighted_n_node_samples", split_column("split_weight"), leaf_column("leaf_weight"))
    with np.errstate(invalid="ignore"):
        weight = np.nan_to_num(nodes["weighted_n_node_samples"], posinf=0.0, neginf=0.0)
        nodes["n_node_samples"] = np.rint(weight)
    values = np.zeros((len(is_leaf), meta.n_values), dtype=np.float64)
    values[leaf_node] = leaf_column("leaf_value")
    return {"node_count": len(is_leaf), "nodes": nodes, "values": values[:, np.newaxis, :]}


# --------------------------------------------------------------------------- loading


def load_forest(uri: str, manifest: dict | None = None) -> Forest:
    """Load and validate a forest from a local path or an ``s3://bucket/key`` URI.

    The URI names either an artifact (any local file not ending in ``.json``; on S3 a key
    ending in ``.gfa``), a manifest (ending in ``.json``), or a directory / S3 prefix that holds
    ``manifest.json``. A manifest is JSON of the form
    ``{"forest": {"key": "forest.gfa", "sha256": "<hex>"}}``; ``key`` is relative to the
    manifest's directory and the artifact's sha256 must match.

    Parameters
    ----------
    uri : str
        Where the artifact or its manifest is.
    manifest : dict or None, default=None
        An already-read manifest; ``uri`` then names its directory (or the manifest itself).

    Returns
    -------
    Forest
        The validated forest.

    Raises
    ------
    ModelNotFound
        If the artifact or manifest does not exist.
    ArtifactError
        If the manifest is malformed, the checksum differs, or the artifact is invalid.
    """
    location = _Location.parse(uri)
    if manifest is None and not location.is_manifest_or_directory():
        return decode_trees(location.read(""))
    if manifest is None:
        manifest = _parse_manifest(location.read(location.manifest_name()), uri)
    key, sha256 = _manifest_forest(manifest, uri)
    blob = location.read(key)
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise ArtifactError(f"the sha256 of {key!r} differs from the one in the manifest of {uri}")
    # The manifest's sha256 covers every byte, so the embedded checksum need not be recomputed.
    return _decode(blob, verify_checksum=False)


@dataclass(frozen=True)
class _Location:
    """A local path or an S3 bucket and key."""

    bucket: str | None
    path: str

    @classmethod
    def parse(cls, uri: str) -> _Location:
        if uri.startswith("s3://"):
            bucket, _, key = uri[len("s3://") :].partition("/")
            if not bucket:
                raise ModelNotFound(f"{uri!r} names no bucket")
            return cls(bucket, key)
        return cls(None, uri)

    def is_manifest_or_directory(self) -> bool:
        if self.path.endswith(".json"):
            return True
        if self.bucket is None:
            return Path(self.path).is_dir()
        return not self.path.endswith(_BLOB_SUFFIX)

    def manifest_name(self) -> str:
        return "" if self.path.endswith(".json") else _MANIFEST_NAME

    def read(self, name: str) -> bytes:
        """Bytes of ``name`` next to this manifest or in this directory; of itself if no name."""
        path = self.path
        if name:
            directory = path.rpartition("/")[0] if path.endswith(".json") else path.rstrip("/")
            path = f"{directory}/{name}" if directory else name
        if self.bucket is not None:
            return _read_s3(self.bucket, path)
        try:
            return Path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ModelNotFound(f"no model file at {path}") from None


def _read_s3(bucket: str, key: str) -> bytes:
    """Bytes of one S3 object; a missing bucket or key raises ModelNotFound."""
    from groveflow import storage

    try:
        return storage.get_bytes(bucket, key)
    except FileNotFoundError:
        raise ModelNotFound(f"no model object at s3://{bucket}/{key}") from None


def _parse_manifest(raw: bytes, uri: str) -> dict:
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ArtifactError(f"the manifest of {uri} is not valid JSON: {error}") from None
    from groveflow.documents import check_manifest

    return check_manifest(manifest, f"of {uri}")


def _manifest_forest(manifest: dict, uri: str) -> tuple[str, str]:
    entry = manifest.get("forest")
    key = entry.get("key") if isinstance(entry, dict) else None
    sha256 = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(key, str) or not isinstance(sha256, str):
        raise ArtifactError(
            f"the manifest of {uri} needs {{'forest': {{'key': <file name>, 'sha256': <hex>}}}}"
        )
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts or "\\" in key:
        raise ArtifactError(
            f"manifest forest key {key!r} must be a relative name below the manifest"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ArtifactError(f"manifest forest sha256 {sha256!r} must be 64 lowercase hex digits")
    return key, sha256

"""The Forest API: a validated forest that predicts exactly as scikit-learn does."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree._tree import Tree
from sklearn.utils import check_array

from groveflow.artifact._codec import (
    _build_sklearn_trees,
    _concat_stored,
    _Meta,
)
from groveflow.encoding import Encoding
from groveflow.errors import ArtifactError, InvalidPredictRequest

_FOREST_KINDS: dict[str, dict[str, type[BaseEstimator]]] = {
    "random_forest": {
        "classification": RandomForestClassifier,
        "regression": RandomForestRegressor,
    },
    "extra_trees": {"classification": ExtraTreesClassifier, "regression": ExtraTreesRegressor},
}


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
    encoding : Encoding or None, default=None
        How the model's raw input columns become these features (:mod:`groveflow.encoding`),
        when it was trained with ``data.categorical``; set by :func:`load_forest`.
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
        self.encoding: Encoding | None = None

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

    # -- conversion ------------------------------------------------------------------

    def to_sklearn(self, kind: str = "random_forest", params: dict | None = None) -> BaseEstimator:
        """A genuine fitted scikit-learn forest holding these trees.

        A forest with an :attr:`encoding` gives ``Pipeline([("encode", ColumnTransformer),
        ("forest", forest)])`` instead, which predicts from the raw input columns (a 2-D
        array in ``encoding.input_names`` order) exactly as groveflow does.

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
            ``feature_importances_`` equal this forest's (or the pipeline ending in it).

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
        return forest if self.encoding is None else self.encoding.pipeline(forest)

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

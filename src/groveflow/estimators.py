"""scikit-learn estimators whose ``fit`` runs groveflow's training state machine.

:class:`GroveForestClassifier` and :class:`GroveForestRegressor` take every parameter of
scikit-learn's ``RandomForestClassifier``/``Regressor`` and ``ExtraTreesClassifier``/``Regressor``
by its name (``n_estimators`` included; ``kind="extra_trees"`` for extra trees), plus
``grove_size``, ``max_concurrency`` and ``engine``; ``fit(X, y, sample_weight=None)`` writes
``X, y`` (and the weights) where the engine's runs read data, trains the forest in groves on
the engine (the embedded local engine by default), every grove fitting with the same weights,
and keeps the merged forest, from which every prediction comes. They work in a ``Pipeline``,
``cross_val_score``, ``GridSearchCV``. What they cannot do is refused by name
(``warm_start=True``).

A fit is a run whose id is a digest of the data and the parameters: fitting the same data
with the same parameters again reuses the stored groves (a resume), and the forest's
bytes are those ``groveflow train`` gives for the equivalent request.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from groveflow.api import RunResult, train
from groveflow.artifact import load_forest
from groveflow.constraints import is_integer
from groveflow.datasets import check_weights
from groveflow.engines import Engine, Local, default_engine
from groveflow.errors import InvalidParameter
from groveflow.request import ESTIMATORS, make_estimator

__all__ = ["GroveForestClassifier", "GroveForestRegressor"]

_TREE_PARAMS = (
    "criterion",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "min_weight_fraction_leaf",
    "max_features",
    "max_leaf_nodes",
    "min_impurity_decrease",
    "bootstrap",
    "ccp_alpha",
    "max_samples",
    "monotonic_cst",
    "oob_score",
)


_USER_ERRORS = ("InvalidRequest", "InvalidDataset", "DatasetTooLarge")

WEIGHT_ARRAY = "sample_weight"
"""The ``.npz`` array ``fit`` writes the weights to, which the request's ``data.weight`` names."""

KINDS = sorted({kind for kind, _ in ESTIMATORS})
"""The accepted ``kind`` values."""


def _plain(value: Any) -> Any:
    """A parameter as JSON holds it (numpy scalars as Python numbers, tuples as lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _refuse_fit_params(estimator: BaseEstimator, fit_params: dict[str, Any]) -> None:
    """Refuse, by name, what ``fit`` was given besides ``X``, ``y`` and ``sample_weight``."""
    if fit_params:
        raise InvalidParameter(
            f"{type(estimator).__name__}.fit() got {sorted(fit_params)}, which it does not "
            "take; fit(X, y, sample_weight=None) is accepted"
        )


def _sample_weight(sample_weight: Any, n_samples: int, name: str) -> np.ndarray | None:
    """``fit``'s ``sample_weight`` as float64 weights (a number: every sample's), checked by
    the rule ``data.weight`` follows (:func:`groveflow.datasets.check_weights`)."""
    if sample_weight is None:
        return None
    what = f"{name}.fit(sample_weight=...)"
    weight = np.asarray(sample_weight)
    if weight.ndim == 0 and weight.dtype.kind in "biuf":
        weight = np.full(n_samples, weight, dtype=np.float64)
    if weight.shape != (n_samples,):
        raise InvalidParameter(
            f"{what} must hold one weight per sample of X ({n_samples}), got shape {weight.shape}"
        )
    return check_weights(weight, what, InvalidParameter)


def _weights_by_code(class_weight: Any, classes: np.ndarray, name: str) -> Any:
    """``class_weight`` with each class label replaced by its index into ``classes`` (the
    labels the groves are trained on), after checking it names classes of ``y``."""
    class_weight = _plain(class_weight)
    if class_weight is None or isinstance(class_weight, str):
        return class_weight  # None, "balanced", "balanced_subsample" (the run checks them)
    labels = classes.tolist()
    if isinstance(class_weight, list | tuple):
        raise InvalidParameter(
            f"{name}(class_weight=[...]): a list of dicts is for multi-output targets, and y "
            f"has one; give a dict of class label to weight (the classes are {labels})"
        )
    if not isinstance(class_weight, dict):
        return class_weight  # the run refuses it with scikit-learn's accepted types
    codes = {label: code for code, label in enumerate(labels)}
    unknown = [label for label in class_weight if label not in codes]
    if unknown:
        raise InvalidParameter(
            f"{name}(class_weight=...) names {unknown}, not classes of y; the classes are {labels}"
        )
    for label, weight in class_weight.items():
        if not (is_integer(weight) or isinstance(weight, float)):
            raise InvalidParameter(
                f"{name}(class_weight=...) gives class {label!r} the weight {weight!r}; "
                "a weight must be a number"
            )
    return {codes[label]: weight for label, weight in class_weight.items()}


class _GroveForest(BaseEstimator):
    """What both estimators share: the request, the run, the forest."""

    _task = "classification"

    def _request(self, data_uri: str, seed: int, *, weighted: bool = False) -> dict[str, Any]:
        params = {name: getattr(self, name) for name in self._forest_params()}
        if params.get("bootstrap") is None:
            params.pop("bootstrap", None)  # the kind's own default
        defaults = self._sklearn_defaults()
        model_params = {
            k: _plain(v)
            for k, v in params.items()
            if _plain(defaults.get(k, object())) != _plain(v)
        }
        if model_params.get("class_weight") is not None:
            model_params["class_weight"] = _weights_by_code(
                model_params["class_weight"], self.classes_, type(self).__name__
            )
        n_trees = self._n_trees()
        grove_size = _plain(self.grove_size) if self.grove_size is not None else None
        if grove_size is None:
            grove_size = min(10, n_trees)
        data = {"uri": data_uri, "format": "npz"}
        if weighted:
            data["weight"] = WEIGHT_ARRAY
        return {
            "data": data,
            "model": {"kind": self.kind, "task": self._task, "params": model_params},
            "n_trees": n_trees,
            "grove_size": grove_size,
            "seed": seed,
            "test_fraction": 0,
            "max_concurrency": _plain(self.max_concurrency),
        }

    def _n_trees(self) -> int:
        """The forest's trees: ``n_estimators``, or ``n_trees`` (its other name) when given."""
        name = type(self).__name__
        n_estimators, n_trees = _plain(self.n_estimators), _plain(self.n_trees)
        if n_trees is not None and n_estimators not in (100, n_trees):
            raise InvalidParameter(
                f"{name}(n_estimators={n_estimators!r}, n_trees={n_trees!r}): n_trees is "
                "another name for n_estimators; give one of them"
            )
        chosen, given = (n_estimators, "n_estimators") if n_trees is None else (n_trees, "n_trees")
        if not is_integer(chosen) or chosen < 1:
            raise InvalidParameter(
                f"{name}({given}={chosen!r}): the number of trees must be an integer of 1 or more"
            )
        return chosen

    def _check_params(self) -> None:
        """Refuse, by name, a ``kind`` groveflow does not train and what it cannot do
        (``warm_start=True``, a scoring function as ``oob_score``)."""
        name = type(self).__name__
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise InvalidParameter(
                f"{name}(kind={_plain(self.kind)!r}) is not a kind of forest "
                f"groveflow trains; accepted: {KINDS}"
            )
        if callable(self.oob_score):
            raise InvalidParameter(
                f"{name}(oob_score={self.oob_score!r}): a scoring function is not supported; "
                "oob_score=True scores out of bag as scikit-learn's default does (accuracy, "
                "or R^2 for a regressor)"
            )
        if self.warm_start:
            raise InvalidParameter(
                f"{name}(warm_start={self.warm_start!r}) is not supported: a fit trains a new "
                "forest in groves (a refit of the same data and parameters reuses the stored "
                "groves); set warm_start=False"
            )
        self._n_trees()

    def _forest_params(self) -> tuple[str, ...]:
        return _TREE_PARAMS

    def _sklearn_defaults(self) -> dict[str, Any]:
        probe = make_estimator(self.kind, self._task, {}, n_trees=1, seed=0)
        return dict(probe.get_params())

    def _seed(self) -> int:
        if isinstance(self.random_state, int | np.integer) and not isinstance(
            self.random_state, bool
        ):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> RunResult:
        if len(y) < 2:
            raise ValueError(
                f"groveflow needs at least 2 samples to train; got n_samples = {len(y)}"
            )
        seed = self._seed()
        names = getattr(self, "feature_names_in_", None)
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {"X": np.asarray(X, dtype=np.float64), "y": y}
        if names is not None:
            arrays["feature_names"] = np.asarray(names, dtype=str)
        weighted = sample_weight is not None
        if sample_weight is not None:
            arrays[WEIGHT_ARRAY] = sample_weight
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        data = buffer.getvalue()
        engine: Engine = self.engine if self.engine is not None else default_engine()
        digest = hashlib.sha256(data)
        probe = self._request("", seed, weighted=weighted)
        digest.update(json.dumps(probe, sort_keys=True, default=str).encode())
        name = digest.hexdigest()[:20]
        uri = engine.data_uri(f"{name}.npz", data)
        request = self._request(uri, seed, weighted=weighted)
        run = train(request, engine=engine, run_id=f"fit-{name}")
        if run.error in _USER_ERRORS:  # the data or the parameters: scikit-learn's ValueError
            raise ValueError(f"{run.error}: {run.cause}")
        run.raise_for_status()
        self.run_ = run
        assert run.model_uri is not None
        model_dir = engine.model_path(run.model_uri)
        try:
            self._load(model_dir, run)
        finally:
            if not isinstance(engine, Local):  # a stack's model, downloaded to a temp dir
                shutil.rmtree(model_dir, ignore_errors=True)
        return run

    def _load(self, model_dir: str, run: RunResult) -> None:
        """The fitted forest (and its OOB decision) from the model's files in ``model_dir``."""
        self.forest_ = load_forest(model_dir)
        self.forest_.n_jobs = self.n_jobs
        if self.oob_score:
            assert run.oob is not None
            self.oob_score_ = float(run.oob["oob_score"])
            manifest = json.loads((Path(model_dir) / "manifest.json").read_bytes())
            name = manifest["oob"]["decision"]["key"]
            decision = np.load(Path(model_dir) / name, allow_pickle=False)
            if self._task == "classification":
                self.oob_decision_function_ = decision
            else:
                self.oob_prediction_ = decision

    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "forest_")
        checked: np.ndarray = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float32
        )
        return checked

    @property
    def feature_importances_(self) -> np.ndarray:
        """Impurity-based feature importances, as scikit-learn's forest of these trees gives."""
        check_is_fitted(self, "forest_")
        importances: np.ndarray = self.forest_.feature_importances_
        return importances

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class GroveForestClassifier(ClassifierMixin, _GroveForest):
    """A random forest (or extra-trees) classifier trained in groves by groveflow.

    Parameters
    ----------
    n_estimators : int, default=100
        Trees in the forest.
    n_trees : int or None, default=None
        Another name for ``n_estimators`` (groveflow's request calls it so); used when given.
    grove_size : int or None, default=None
        Trees each grove builder fits; ``min(10, n_estimators)`` if None.
    kind : {"random_forest", "extra_trees"}, default="random_forest"
    criterion, max_depth, min_samples_split, min_samples_leaf, min_weight_fraction_leaf,
    max_features, max_leaf_nodes, min_impurity_decrease, bootstrap, ccp_alpha,
    max_samples, monotonic_cst, class_weight
        As scikit-learn's ``RandomForestClassifier`` (``bootstrap=None``: the kind's
        default, True for random_forest and False for extra_trees).
    oob_score : bool, default=False
        Score the forest out of bag, across its groves, exactly as scikit-learn's
        ``oob_score=True`` does for the same trees.
    random_state : int, RandomState or None, default=None
        Seeds the groves (``SeedSequence(random_state).spawn``); None draws one.
    verbose : int, default=0
        Accepted as scikit-learn's forests take it; the engine reports a run's progress.
    warm_start : bool, default=False
        Only False: True is refused by name (a refit of the same data and parameters
        reuses the stored groves instead).
    max_concurrency : int, default=40
        Grove builders at once.
    n_jobs : int or None, default=None
        Threads for predicting (the forest's; training parallelism is the engine's).
    engine : Engine or None, default=None
        Where ``fit`` runs (:class:`groveflow.Local`, :class:`groveflow.Stack`); the
        process's embedded local engine if None.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        When ``X`` had string column names.
    forest_ : groveflow.artifact.Forest
        The merged forest every prediction comes from.
    run_ : groveflow.RunResult
        The training run (its id, cost, seconds per stage).
    feature_importances_ : ndarray of shape (n_features_in_,)
    oob_score_ : float
        Out-of-bag accuracy (``oob_score=True`` only).
    oob_decision_function_ : ndarray of shape (n_samples, n_classes)
        Out-of-bag class probabilities of the training samples (``oob_score=True`` only).
    """

    _task = "classification"

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        n_trees: int | None = None,
        grove_size: int | None = None,
        kind: str = "random_forest",
        criterion: str = "gini",
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: Any = "sqrt",
        max_leaf_nodes: int | None = None,
        min_impurity_decrease: float = 0.0,
        bootstrap: bool | None = None,
        ccp_alpha: float = 0.0,
        max_samples: int | float | None = None,
        monotonic_cst: Any = None,
        oob_score: bool = False,
        class_weight: Any = None,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        max_concurrency: int = 40,
        n_jobs: int | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.n_trees = n_trees
        self.grove_size = grove_size
        self.kind = kind
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_weight_fraction_leaf = min_weight_fraction_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.min_impurity_decrease = min_impurity_decrease
        self.bootstrap = bootstrap
        self.ccp_alpha = ccp_alpha
        self.max_samples = max_samples
        self.monotonic_cst = monotonic_cst
        self.oob_score = oob_score
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.max_concurrency = max_concurrency
        self.n_jobs = n_jobs
        self.engine = engine

    def _forest_params(self) -> tuple[str, ...]:
        return (*_TREE_PARAMS, "class_weight")

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, **fit_params: Any
    ) -> GroveForestClassifier:
        """Train the forest on the engine.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples; NaN marks a missing value.
        y : array-like of shape (n_samples,)
            Class labels (numbers, strings or booleans); they are trained as their
            indices into ``classes_`` (``class_weight`` names the labels themselves).
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight, as scikit-learn's forests take it: every grove fits with
            these weights (times its bootstrap counts, times ``class_weight``'s). Finite,
            none negative, not all zero. None: every sample weighs 1.
        **fit_params
            None is accepted: any other argument is refused by name.

        Returns
        -------
        self

        Raises
        ------
        InvalidParameter
            A ``ValueError`` naming a ``kind`` that is not accepted, ``warm_start=True``, a
            ``class_weight`` that names a label ``y`` lacks, a ``sample_weight`` that breaks
            the rule above, or a ``fit`` argument other than these.
        """
        _refuse_fit_params(self, fit_params)
        self._check_params()
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float32)
        check_classification_targets(y)
        weight = _sample_weight(sample_weight, len(y), type(self).__name__)
        self.classes_, codes = np.unique(y, return_inverse=True)
        _weights_by_code(self.class_weight, self.classes_, type(self).__name__)
        self._fit(X, codes.astype(np.int64), weight)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order), as scikit-learn's forest."""
        checked = self._check_X(X)
        proba: np.ndarray = self.forest_.predict_proba(checked)
        return proba  # the trees' classes are 0..n_classes-1: the columns of classes_

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample."""
        proba = self.predict_proba(X)
        labels: np.ndarray = self.classes_.take(np.argmax(proba, axis=1))
        return labels


class GroveForestRegressor(RegressorMixin, _GroveForest):
    """A random forest (or extra-trees) regressor trained in groves by groveflow.

    Parameters
    ----------
    n_estimators : int, default=100
    n_trees : int or None, default=None
    grove_size : int or None, default=None
    kind : {"random_forest", "extra_trees"}, default="random_forest"
    criterion : str, default="squared_error"
    max_features : int, float, str or None, default=1.0
    max_depth, min_samples_split, min_samples_leaf, min_weight_fraction_leaf,
    max_leaf_nodes, min_impurity_decrease, bootstrap, ccp_alpha, max_samples, monotonic_cst,
    oob_score
        As scikit-learn's ``RandomForestRegressor`` (``oob_score``: see
        :class:`GroveForestClassifier`; gives ``oob_score_``, an R^2, and ``oob_prediction_``).
    random_state, verbose, warm_start, max_concurrency, n_jobs, engine
        As :class:`GroveForestClassifier`.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    forest_ : groveflow.artifact.Forest
    run_ : groveflow.RunResult
    feature_importances_ : ndarray of shape (n_features_in_,)
    """

    _task = "regression"

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        n_trees: int | None = None,
        grove_size: int | None = None,
        kind: str = "random_forest",
        criterion: str = "squared_error",
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: Any = 1.0,
        max_leaf_nodes: int | None = None,
        min_impurity_decrease: float = 0.0,
        bootstrap: bool | None = None,
        ccp_alpha: float = 0.0,
        max_samples: int | float | None = None,
        monotonic_cst: Any = None,
        oob_score: bool = False,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        max_concurrency: int = 40,
        n_jobs: int | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.n_trees = n_trees
        self.grove_size = grove_size
        self.kind = kind
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_weight_fraction_leaf = min_weight_fraction_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.min_impurity_decrease = min_impurity_decrease
        self.bootstrap = bootstrap
        self.ccp_alpha = ccp_alpha
        self.max_samples = max_samples
        self.monotonic_cst = monotonic_cst
        self.oob_score = oob_score
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.max_concurrency = max_concurrency
        self.n_jobs = n_jobs
        self.engine = engine

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, **fit_params: Any
    ) -> GroveForestRegressor:
        """Train the forest on the engine.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Numeric targets.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            As :meth:`GroveForestClassifier.fit`.
        **fit_params
            None is accepted: any other argument is refused by name.

        Returns
        -------
        self

        Raises
        ------
        InvalidParameter
            A ``ValueError`` naming a ``kind`` that is not accepted, ``warm_start=True``, a
            ``sample_weight`` that is not finite, non-negative and not all zero, or a
            ``fit`` argument other than these.
        """
        _refuse_fit_params(self, fit_params)
        self._check_params()
        X, y = validate_data(
            self, X, y, ensure_all_finite="allow-nan", dtype=np.float32, y_numeric=True
        )
        weight = _sample_weight(sample_weight, len(y), type(self).__name__)
        self._fit(X, np.asarray(y, dtype=np.float64), weight)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The mean of the trees' predictions, as scikit-learn's forest."""
        checked = self._check_X(X)
        predicted: np.ndarray = self.forest_.predict(checked)
        return predicted

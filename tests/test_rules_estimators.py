"""Issue 26, items 9 and 16: the estimators under joblib's process pools, and their refusals.

Every fit is a real run of the training state machine, on a local engine whose state is a
temporary directory; a joblib worker starts an engine of its own on the same directory.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score

from groveflow.api import RunFailed, train
from groveflow.engines import Local
from groveflow.errors import InvalidParameter, InvalidRequest
from groveflow.estimators import GroveForestClassifier, GroveForestRegressor


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    with Local(workers=1, state_dir=tmp_path_factory.mktemp("groveflow-rules-est")) as local:
        yield local


def test_grid_search_with_two_processes_completes_on_breast_cancer(engine: Local) -> None:
    # GIVEN a small grid over a few-tree forest, searched by two joblib processes
    X, y = load_breast_cancer(return_X_y=True)
    forest = GroveForestClassifier(n_trees=4, grove_size=2, random_state=0, engine=engine)
    search = GridSearchCV(forest, {"max_depth": [2, 4]}, cv=2, n_jobs=2, error_score="raise")

    # WHEN it fits
    search.fit(X, y)

    # THEN every candidate was scored, and the refit forest predicts
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["max_depth"] in (2, 4)
    assert search.best_score_ > 0.85
    assert search.best_estimator_.score(X, y) > 0.9


def test_cross_val_score_with_two_processes_equals_the_serial_scores(engine: Local) -> None:
    X, y = load_iris(return_X_y=True)
    forest = GroveForestClassifier(n_trees=4, grove_size=2, random_state=3, engine=engine)

    parallel = cross_val_score(forest, X, y, cv=3, n_jobs=2)
    serial = cross_val_score(forest, X, y, cv=3, n_jobs=1)

    assert_array_equal(parallel, serial)
    assert parallel.min() > 0.8


def test_run_failed_round_trips_through_pickle(engine: Local) -> None:
    # GIVEN the error a refused run raises
    run = train({"data": {"uri": "sklearn:wine"}, "n_trees": 0}, engine=engine)
    with pytest.raises(RunFailed) as raised:
        run.raise_for_status()

    # WHEN a process pool sends it to its caller
    copy = pickle.loads(pickle.dumps(raised.value))

    # THEN the caller gets the same error, message and result
    assert type(copy) is RunFailed
    assert str(copy) == str(raised.value)
    assert copy.error == "InvalidRequest"
    assert copy.cause == run.cause
    assert copy.result == run
    assert copy.result.local_dir == Path(str(run.local_dir))


def test_a_regressor_cross_validates_with_two_processes(engine: Local) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X[:, 0] * 2 + rng.normal(scale=0.1, size=80)
    forest = GroveForestRegressor(n_trees=4, grove_size=2, random_state=0, engine=engine)

    scores = cross_val_score(forest, X, y, cv=2, n_jobs=2)

    assert scores.min() > 0.5


# ------------------------------------------------------------------------------ item 16

PETS = np.array(["cat", "dog", "bird"] * 10)


def _pets() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).normal(size=(len(PETS), 2))
    return X, PETS


@pytest.mark.parametrize("estimator", [GroveForestClassifier, GroveForestRegressor])
def test_an_unknown_kind_is_refused_by_name_with_the_accepted_kinds(estimator: Any) -> None:
    X, _ = _pets()
    forest = estimator(n_trees=2, grove_size=1, kind="xgboost")

    with pytest.raises(InvalidParameter) as refused:
        forest.fit(X, np.arange(len(X)) % 2)

    assert str(refused.value) == (
        f"{estimator.__name__}(kind='xgboost') is not a kind of forest groveflow trains; "
        "accepted: ['extra_trees', 'random_forest']"
    )
    assert isinstance(refused.value, ValueError)  # as scikit-learn's estimators raise
    assert isinstance(refused.value, InvalidRequest)


@pytest.mark.parametrize(
    ("labels", "class_weight", "message"),
    [
        (
            PETS,
            {"cat": 2.0, "cow": 1.0},
            "GroveForestClassifier(class_weight=...) names ['cow'], not classes of y; "
            "the classes are ['bird', 'cat', 'dog']",
        ),
        (
            np.array([5, 7, 9] * 10),
            {np.int64(6): 2.0},
            "GroveForestClassifier(class_weight=...) names [6], not classes of y; "
            "the classes are [5, 7, 9]",
        ),
        (
            PETS,
            {"cat": "heavy"},
            "GroveForestClassifier(class_weight=...) gives class 'cat' the weight 'heavy'; "
            "a weight must be a number",
        ),
        (
            PETS,
            [{"cat": 2.0}],
            "GroveForestClassifier(class_weight=[...]): a list of dicts is for multi-output "
            "targets, and y has one; give a dict of class label to weight (the classes are "
            "['bird', 'cat', 'dog'])",
        ),
    ],
)
def test_a_class_weight_error_names_the_users_labels(
    engine: Local, labels: np.ndarray, class_weight: Any, message: str
) -> None:
    X, _ = _pets()
    forest = GroveForestClassifier(
        n_trees=2, grove_size=1, class_weight=class_weight, engine=engine
    )

    with pytest.raises(InvalidParameter) as refused:
        forest.fit(X, labels)

    assert str(refused.value) == message


def test_class_weight_by_label_and_numpy_parameters_train(engine: Local) -> None:
    # GIVEN numpy-typed parameters, as a grid of np.arange gives them, and weights by label
    X, y = _pets()
    weights = {np.str_("cat"): np.int64(5), "dog": 1, "bird": np.float64(1.0)}
    forest = GroveForestClassifier(
        n_trees=np.int64(4),
        grove_size=np.int64(2),
        max_concurrency=np.int64(2),
        class_weight=weights,
        random_state=0,
        engine=engine,
    )

    # WHEN it fits
    forest.fit(X, y)

    # THEN the run weighed the classes the user named: as a fit on the labels' indices
    # (bird, cat, dog -> 0, 1, 2) with the same weights by index, unlike no weights
    assert forest.run_.trees_built == 4
    codes = np.unique(y, return_inverse=True)[1]
    by_code = clone(forest).set_params(class_weight={1: 5, 0: 1, 2: 1}).fit(X, codes)
    unweighted = clone(forest).set_params(class_weight=None).fit(X, y)
    assert_array_equal(forest.predict_proba(X), by_code.predict_proba(X))
    assert np.abs(forest.predict_proba(X) - unweighted.predict_proba(X)).max() > 0


@pytest.mark.parametrize("estimator", [GroveForestClassifier, GroveForestRegressor])
def test_a_fit_argument_other_than_sample_weight_is_refused_by_name(
    engine: Local, estimator: Any
) -> None:
    # sample_weight is supported since issue 30 (tests/test_weights.py); others are refused
    X, _ = _pets()
    y = np.arange(len(X)) % 2

    with pytest.raises(InvalidParameter, match=r"got \['weights'\], which it does not take"):
        estimator(n_trees=2, grove_size=1, engine=engine).fit(X, y, weights=np.ones(len(X)))


def test_a_class_weight_error_of_a_training_request_names_its_labels(
    engine: Local, tmp_path: Path
) -> None:
    # GIVEN a CSV of text labels, and class weights naming one label it does not hold
    X, y = _pets()
    rows = [f"{a:.3f},{b:.3f},{label}" for (a, b), label in zip(X, y, strict=True)]
    (tmp_path / "pets.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    request = {
        "data": {"uri": str(tmp_path / "pets.csv"), "target": "label"},
        "n_trees": 2,
        "grove_size": 1,
        "model": {"params": {"class_weight": {"cat": 2, "cow": 1}}},
    }

    # WHEN it trains
    run = train(request, engine=engine)

    # THEN the plan refuses it naming the key and the labels (not the classes it weighs)
    assert run.error == "InvalidRequest"
    assert run.cause == (
        "model.params.class_weight names ['cow'], not classes of the target; the classes are "
        "['bird', 'cat', 'dog']"
    )

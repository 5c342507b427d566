"""Issue 26, items 9 and 16: the estimators under joblib's process pools, and their refusals.

Every fit is a real run of the training state machine, on a local engine whose state is a
temporary directory; a joblib worker starts an engine of its own on the same directory.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score

from groveflow.api import RunFailed, train
from groveflow.engines import Local
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

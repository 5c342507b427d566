"""The public API: train, predict, load_forest, engines, and the scikit-learn estimators.

The estimators are checked with scikit-learn's own ``parametrize_with_checks``, every fit a
real run of the training state machine on one warm local engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits, load_iris
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import ROOT
from groveflow.api import RunFailed, predict, train
from groveflow.engines import Local
from groveflow.estimators import GroveForestClassifier, GroveForestRegressor
from groveflow.layout import keys
from groveflow.local.engine import mirrored

GROVEFLOW = [sys.executable, "-m", "groveflow.cli"]

# One warm engine for every estimator check: started by the first fit, closed at the end.
WARM_STATE = Path(tempfile.mkdtemp(prefix="groveflow-api-"))
WARM = Local(workers=2, state_dir=WARM_STATE)


@pytest.fixture(scope="module", autouse=True)
def _close_the_warm_engine() -> Iterator[None]:
    yield
    WARM.close()
    shutil.rmtree(WARM_STATE, ignore_errors=True)  # nothing left behind in the temp directory


def _expected_failures(estimator: Any) -> dict[str, str]:
    """The one check expected to fail, the one scikit-learn's own RandomForestClassifier and
    RandomForestRegressor expect to fail (and do: 14 of 45 probabilities, 7 of 15
    predictions differ for them at 4 trees, as for ours)."""
    return {
        "check_sample_weight_equivalence_on_dense_data": (
            "sample_weight is not equivalent to removing/repeating samples: each tree's "
            "bootstrap sample is drawn from the rows given, so repeating a row or removing one "
            "of zero weight changes the draws (as for scikit-learn's RandomForest*). A weighted "
            "fit is scikit-learn's forest.fit(X, y, sample_weight) bit for bit: test_weights.py"
        )
    }


# Every check runs, and only the sample-weight equivalence is expected to fail (see above).
# Those that need pandas (check_classifier_data_not_an_array, check_regressor_data_not_an_array,
# check_sample_weights_pandas_series) skip themselves where it is not installed: groveflow
# does not depend on it.
@parametrize_with_checks(
    [
        GroveForestClassifier(n_estimators=4, grove_size=2, engine=WARM),
        GroveForestRegressor(n_estimators=4, grove_size=2, engine=WARM),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


def test_a_pipeline_ending_in_a_grove_forest_cross_validates() -> None:
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(
        StandardScaler(), GroveForestClassifier(n_trees=10, random_state=0, engine=WARM)
    )
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.9


def test_string_labels_and_feature_importances() -> None:
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = GroveForestClassifier(n_trees=6, random_state=3, engine=WARM).fit(X, names)
    assert_array_equal(model.classes_, ["setosa", "versicolor", "virginica"])
    assert set(model.predict(X)) <= set(model.classes_)
    assert model.feature_importances_.shape == (4,)
    assert model.feature_importances_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_oob_score_is_scikit_learns_for_the_same_forest(task: str) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from groveflow.layout import grove_seeds

    # GIVEN one grove of 16 trees (the forest one scikit-learn fit makes), with oob_score
    if task == "classification":
        X, y = load_iris(return_X_y=True)
        ours: Any = GroveForestClassifier(n_trees=16, grove_size=16, oob_score=True, engine=WARM)
        theirs: Any = RandomForestClassifier
    else:
        X, y = load_diabetes(return_X_y=True)
        ours = GroveForestRegressor(n_trees=16, grove_size=16, oob_score=True, engine=WARM)
        theirs = RandomForestRegressor
    ours.set_params(random_state=4).fit(X, y)
    # WHEN scikit-learn fits the same trees with oob_score=True
    fitted = theirs(n_estimators=16, random_state=grove_seeds(4, 1)[0], oob_score=True)
    fitted.fit(X.astype(np.float32), y)
    # THEN the OOB score and the OOB predictions are scikit-learn's, bit for bit
    assert ours.oob_score_ == fitted.oob_score_
    if task == "classification":
        np.testing.assert_array_equal(ours.oob_decision_function_, fitted.oob_decision_function_)
    else:
        np.testing.assert_array_equal(ours.oob_prediction_, fitted.oob_prediction_)


def test_one_fit_gives_the_forest_groveflow_train_gives(tmp_path: Path) -> None:
    # GIVEN digits as an .npz file and the equivalent training request
    X, y = load_digits(return_X_y=True)
    data = tmp_path / "digits.npz"
    np.savez(data, X=X, y=y)
    request = {
        "data": {"uri": str(data)},
        "model": {"params": {"max_depth": 8}},
        "n_trees": 12,
        "grove_size": 4,
        "seed": 5,
        "test_fraction": 0,
    }
    source = tmp_path / "digits.json"
    source.write_text(json.dumps(request))
    # WHEN the CLI trains it, and the estimator fits the same arrays
    state = tmp_path / "state"
    done = subprocess.run(
        [*GROVEFLOW, "train", str(source), "--run-id", "cli", "--state-dir", str(state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    model = GroveForestClassifier(
        n_trees=12, grove_size=4, max_depth=8, random_state=5, engine=WARM
    ).fit(X, y)
    # THEN the forests are byte for byte the same
    fitted = (model.run_.model_dir / "forest.gfa").read_bytes()
    assert fitted == mirrored(state, keys.forest("cli")).read_bytes()


def test_train_predict_and_load_forest_through_the_api(tmp_path: Path) -> None:
    # GIVEN an engine of the user's own, and a request as a dict
    with Local(workers=2, state_dir=tmp_path / "state") as engine:
        # WHEN they train and score through the API
        run = train({"data": {"uri": "sklearn:wine"}, "n_trees": 6}, engine=engine)
        run.raise_for_status()
        scored = predict(
            {"model": run.run_id, "data": {"uri": "sklearn:wine"}, "shard_rows": 100},
            engine=engine,
        )
        # THEN the results say what happened, and the forest predicts
        assert run.succeeded and scored.succeeded, (scored.error, scored.cause)
        assert run.trees_built == 6 and run.metrics is not None and run.metrics["accuracy"] > 0.8
        assert set(run.phase_seconds) >= {"Plan", "BuildGroves", "Merge"}
        assert run.cost is not None and run.cost["total_usd"] > 0
        assert run.model_dir is not None and (run.model_dir / "manifest.json").is_file()
        forest = run.load_forest()
        assert forest.n_trees == 6
        assert scored.predictions is not None and scored.predictions["n_rows"] == 178
        assert scored.local_dir is not None
        assert len(list(scored.local_dir.glob("part-*.csv"))) == 2
        # ... and a refused request is a failed result that raises by name on demand
        refused = train({"data": {"uri": "sklearn:wine"}, "n_trees": 0}, engine=engine)
        assert (refused.status, refused.error) == ("FAILED", "InvalidRequest")
        with pytest.raises(RunFailed, match="InvalidRequest: n_trees=0 is out of range"):
            refused.raise_for_status()


def test_the_package_exports_the_api() -> None:
    import groveflow

    assert {"train", "predict", "load_forest", "Local", "Stack"} <= set(groveflow.__all__)
    assert groveflow.GroveForestClassifier is GroveForestClassifier
    assert callable(groveflow.load_forest)


def test_a_local_engine_shows_its_settings_not_a_memory_address(tmp_path: Path) -> None:
    # GIVEN an engine given some settings, and one given none
    engine = Local(workers=2, state_dir=tmp_path)
    # WHEN each is shown, and an estimator holding one (as a test id shows it)
    shown = repr(GroveForestClassifier(n_estimators=4, engine=engine))
    # THEN they name the settings given, not where the object lives in memory
    assert repr(engine) == f"Local(workers=2, state_dir={str(tmp_path.resolve())!r})"
    assert repr(Local()) == "Local()"
    assert "Local(workers=2" in shown
    assert "0x" not in shown

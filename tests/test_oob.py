"""Out-of-bag scores across groves, against scikit-learn's own ``oob_score_``.

Each run goes through Plan, the grove Map and Merge on the local engine. The reference is
scikit-learn's forest class fitted grove by grove from the manifest's seeds on the stored
training split, its trees concatenated, scored by scikit-learn's own OOB code
(``_set_oob_score_and_attributes``, what ``fit(oob_score=True)`` calls); and, for a
one-grove forest, a plain ``fit`` with ``oob_score=True``.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from evidence import body, refit_from_seeds
from evidence import stored_npy as _npy
from groveflow.errors import InvalidRequest
from groveflow.layout import keys
from groveflow.request import parse_train_request


def _train(engine: Any, request: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    run_id = unique_name("oob")
    result = engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return run_id, json.loads(body(engine, keys.manifest(run_id))), result


def _reference(engine: Any, run_id: str, estimator_class: Any) -> Any:
    """scikit-learn's forest refitted grove by grove, with scikit-learn's own OOB score."""
    reference = refit_from_seeds(engine, run_id, estimator_class)
    X = _npy(engine, keys.split(run_id, "X_train"))
    y = _npy(engine, keys.split(run_id, "y_train"))
    target = np.searchsorted(reference.classes_, y) if hasattr(reference, "classes_") else y
    if hasattr(reference, "n_classes_"):
        reference.n_classes_ = np.array([reference.n_classes_])  # as it is inside fit
    with warnings.catch_warnings():  # rows no tree left out are compared too
        warnings.simplefilter("ignore", UserWarning)
        reference._set_oob_score_and_attributes(X, target.reshape(-1, 1))
    return reference


CASES = {
    "rf-classification": ("sklearn:wine", "random_forest", "classification", {}),
    "rf-classification-max-samples": (
        "sklearn:breast_cancer",
        "random_forest",
        "classification",
        {"max_samples": 0.5, "min_samples_leaf": 2},
    ),
    "rf-regression": ("sklearn:diabetes", "random_forest", "regression", {}),
    "rf-regression-max-samples": (
        "sklearn:diabetes",
        "random_forest",
        "regression",
        {"max_samples": 0.6, "max_features": 0.5},
    ),
    "et-bootstrap-classification": (
        "sklearn:iris",
        "extra_trees",
        "classification",
        {"bootstrap": True},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_oob_scores_equal_scikit_learns_for_the_same_trees(engine: Any, case: str) -> None:
    from sklearn import ensemble

    from groveflow.request import ESTIMATORS

    uri, kind, task, params = CASES[case]
    # GIVEN a forest of 4 groves trained with oob_score through the state machine
    request = {
        "data": {"uri": uri},
        "model": {"kind": kind, "task": task, "params": {**params, "oob_score": True}},
        "n_trees": 14,
        "grove_size": 4,
        "seed": 5,
        "test_fraction": 0.2,
    }
    run_id, manifest, result = _train(engine, request)
    # WHEN scikit-learn scores the same trees out of bag
    reference = _reference(engine, run_id, getattr(ensemble, ESTIMATORS[kind, task]))
    # THEN the score and the decision function are scikit-learn's, to rounding
    oob = manifest["oob"]
    assert abs(oob["metrics"]["oob_score"] - reference.oob_score_) <= 1e-12
    assert result.output["oob"]["oob_score"] == oob["metrics"]["oob_score"]
    decision = _npy(engine, f"runs/{run_id}/model/{oob['decision']['key']}")
    expected = (
        reference.oob_decision_function_ if task == "classification" else reference.oob_prediction_
    )
    assert decision.shape == expected.shape
    np.testing.assert_allclose(decision, expected, rtol=0, atol=1e-12)
    # and the curve ends at the whole forest's score
    assert oob["curve"][-1] == [14, oob["metrics"]["oob_score"]]
    assert [point[0] for point in oob["curve"]] == sorted({p[0] for p in oob["curve"]})


def test_a_one_grove_forest_has_exactly_the_oob_score_of_fit(engine: Any) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from groveflow.layout import grove_seeds

    # GIVEN one grove of 12 trees, i.e. the forest one scikit-learn fit makes
    request = {
        "data": {"uri": "sklearn:breast_cancer"},
        "model": {"params": {"oob_score": True, "max_samples": 0.7}},
        "n_trees": 12,
        "grove_size": 12,
        "seed": 3,
    }
    run_id, manifest, _ = _train(engine, request)
    X = _npy(engine, keys.split(run_id, "X_train"))
    y = _npy(engine, keys.split(run_id, "y_train"))
    # WHEN scikit-learn fits the same forest with oob_score=True
    fitted = RandomForestClassifier(
        n_estimators=12, random_state=grove_seeds(3, 1)[0], oob_score=True, max_samples=0.7
    ).fit(X, y)
    # THEN the scores and decision functions are equal, bit for bit (one grove: one sum order)
    assert manifest["oob"]["metrics"]["oob_score"] == fitted.oob_score_
    decision = _npy(engine, keys.oob_decision(run_id))
    np.testing.assert_array_equal(decision, fitted.oob_decision_function_)


def test_oob_metrics_cover_the_rows_some_tree_left_out(engine: Any) -> None:
    # GIVEN a regression with oob_score and no holdout
    request = {
        "data": {"uri": "sklearn:diabetes"},
        "model": {"task": "regression", "params": {"oob_score": True}},
        "n_trees": 20,
        "grove_size": 5,
        "seed": 2,
        "test_fraction": 0,
    }
    _, manifest, result = _train(engine, request)
    metrics = manifest["oob"]["metrics"]
    # THEN every training row is counted, the R^2 is a real score and the summary has it
    assert metrics["n_rows"] == 442
    assert 0 <= metrics["n_rows_without_oob"] < 5
    assert 0.2 < metrics["r2"] < 0.7
    assert result.output["oob"] == metrics


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"kind": "extra_trees", "params": {"oob_score": True}}, "needs bootstrap=true"),
        ({"params": {"oob_score": True, "bootstrap": False}}, "needs bootstrap=true"),
        ({"params": {"oob_score": "accuracy"}}, "give true or false"),
    ],
)
def test_oob_without_meaning_is_refused_by_name(model: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_train_request({"data": {"uri": "sklearn:iris"}, "model": model})


def test_oob_that_would_cover_too_few_rows_is_refused_before_fan_out(engine: Any) -> None:
    # GIVEN two trees that each draw every row: most rows are in every bootstrap
    run_id = unique_name("oob-few")
    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": {"oob_score": True}},
        "n_trees": 1,
        "run_id": run_id,
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the plan refuses it by name, and no grove was built
    assert result.status == "FAILED"
    assert result.error == "InvalidRequest"
    assert "out of bag for any tree" in result.cause
    assert [i.function for i in result.invocations if i.function == "BuildGroveFunction"] == []


def test_the_summary_and_report_show_the_oob_score_and_curve(engine: Any, tmp_path: Any) -> None:
    from html.parser import HTMLParser

    from groveflow import console
    from groveflow.api import result_of
    from groveflow.engines import Execution
    from groveflow.report import write_report

    # GIVEN a classification run with oob_score and a holdout
    request = {
        "data": {"uri": "sklearn:wine"},
        "model": {"params": {"oob_score": True}},
        "n_trees": 12,
        "grove_size": 3,
        "seed": 9,
    }
    run_id, manifest, result = _train(engine, request)
    # WHEN its summary and report are made
    ended = Execution("arn:run", result.status, result.output, None, None, 1.0)
    summary = console.summary(result_of("train", run_id, ended))
    page = write_report(engine.run_dir(run_id), tmp_path).read_text()
    # THEN both carry the OOB score, and the report plots it against trees
    assert summary["oob"] == manifest["oob"]["metrics"]
    assert 'id="plot-oob_vs_trees"' in page
    score = manifest["oob"]["metrics"]["oob_score"]

    found: dict[str, str] = {}

    class Values(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            named = dict(attrs)
            if named.get("id", "") and str(named["id"]).startswith("oob-"):
                found[str(named["id"])] = str(named.get("data-value"))

    parser = Values()
    parser.feed(page)
    assert float(found["oob-oob_score"]) == score

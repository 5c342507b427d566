"""Issue 30: sample weights, by a request's ``data.weight`` column and by the estimators'
``fit(X, y, sample_weight=...)``, each grove fitting with them exactly as scikit-learn's forest
of the same trees does; bad weights refused by name before any grove is built.

The exactness tests rebuild a run grove by grove from its manifest's seeds with scikit-learn
(:func:`evidence.refit_from_seeds`) and compare ``predict_proba`` bit for bit.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from conftest import unique_name
from evidence import has, refit_from_seeds, stored_npy
from groveflow.artifact import load_forest
from groveflow.datasets import Dataset
from groveflow.engines import Local
from groveflow.errors import DatasetTooLarge, InvalidDataset, InvalidParameter, InvalidRequest
from groveflow.estimators import GroveForestClassifier, GroveForestRegressor
from groveflow.layout import keys
from groveflow.request import parse_train_request
from groveflow.training._plan import read_and_check, split_dataset, split_rows


def _wine_table(path: Path, weights: list[str]) -> np.ndarray:
    """wine as a CSV of 13 features, the cultivar, and a weight column ``w`` (given as text:
    empty for a missing weight)."""
    bunch = load_wine()
    labels = np.array(["barolo", "grignolino", "barbera"])[bunch.target]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(13)] + ["cultivar", "w"])
        for row, label, weight in zip(bunch.data, labels, weights, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [label, weight])
    return bunch.data.astype(np.float32)


def _wine_parquet(path: Path, weights: np.ndarray) -> np.ndarray:
    """wine as a Parquet table of 13 float features, the cultivar (text) and float weights."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bunch = load_wine()
    columns: dict[str, Any] = {f"f{i}": bunch.data[:, i] for i in range(13)}
    columns["cultivar"] = np.array(["barolo", "grignolino", "barbera"])[bunch.target].tolist()
    columns["w"] = weights
    pq.write_table(pa.table(columns), path)
    return bunch.data.astype(np.float32)


def _some_weights(n_rows: int) -> np.ndarray:
    """Weights of 0 to 4 and fractions: enough zeros and spread to change every tree."""
    rng = np.random.default_rng(30)
    return rng.integers(0, 5, n_rows) * rng.choice([0.5, 1.0, 2.25], n_rows)


def _request(path: Path, run_id: str, **data: Any) -> dict[str, Any]:
    return {
        "data": {"uri": str(path), "target": "cultivar", "weight": "w", **data},
        "model": {"params": {"class_weight": "balanced", "max_samples": 0.5}},
        "n_trees": 6,
        "grove_size": 2,
        "seed": 30,
        "run_id": run_id,
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_weight_column_trains_every_grove_as_scikit_learn_with_those_weights(
    engine: Any, tmp_path: Path, fmt: str
) -> None:
    # GIVEN wine as CSV or Parquet with a weight column, class_weight="balanced", max_samples
    weights = _some_weights(178)
    path = tmp_path / f"wine.{fmt}"
    if fmt == "csv":
        X_all = _wine_table(path, [repr(float(w)) for w in weights])
    else:
        X_all = _wine_parquet(path, weights)
    run_id = unique_name("weighted")
    # WHEN it trains in 3 groves of 2 trees
    result = engine.run("TrainStateMachine", _request(path, run_id), name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # THEN the training rows' weights are stored beside the split, and the forest has 13
    # features (the weight column is not one)
    stored = stored_npy(engine, keys.split(run_id, "w_train"))
    assert stored.dtype == np.float64 and len(stored) == len(
        stored_npy(engine, keys.split(run_id, "y_train"))
    )
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.n_features_in_ == 13
    # and scikit-learn refitting each grove from its seed with those weights gives the same
    # probabilities, bit for bit (the weights times class_weight's times the bootstrap counts)
    reference = refit_from_seeds(engine, run_id, RandomForestClassifier)
    difference = np.abs(forest.predict_proba(X_all) - reference.predict_proba(X_all)).max()
    assert difference == 0
    # while the same seeds fitted without the weights give another forest
    manifest = json.loads((engine.run_dir(run_id) / "model" / "manifest.json").read_text())
    X = stored_npy(engine, keys.split(run_id, "X_train"))
    y = stored_npy(engine, keys.split(run_id, "y_train"))
    unweighted = _refit(manifest, RandomForestClassifier, X, y, None)
    assert np.abs(forest.predict_proba(X_all) - unweighted.predict_proba(X_all)).max() > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": "weights"}, r"weight column 'weights' \(data.weight\) is not in"),
        (
            "text",
            r"the weight column 'w' \(data.weight\) of .* holds text; a weight must be a number",
        ),
        ("missing", r"weights are missing \(NaN\) \(rows \[3\]"),
        ("inf", r"weights are infinite \(rows \[3\]"),
        ("negative", r"1 weights are negative \(rows \[3\]\.\.\., the first -2\)"),
        ("zero", r"every weight is 0, so no row would count"),
    ],
)
def test_bad_weights_are_refused_by_name_before_any_grove(
    engine: Any, tmp_path: Path, change: Any, message: str
) -> None:
    # GIVEN a weight column with one bad value (or a weight column the data lacks)
    weights = ["1.5"] * 178
    data: dict[str, Any] = {}
    if isinstance(change, dict):
        data = change
    elif change == "zero":
        weights = ["0"] * 178
    else:
        weights[3] = {"text": "heavy", "missing": "", "inf": "inf", "negative": "-2"}[change]
    _wine_table(tmp_path / "wine.csv", weights)
    run_id = unique_name("bad-weight")
    # WHEN it is trained
    result = engine.run(
        "TrainStateMachine", _request(tmp_path / "wine.csv", run_id, **data), name=run_id
    )
    # THEN the plan refuses it by name, and no grove was built
    assert (result.status, result.error) == ("FAILED", "InvalidDataset"), result.cause
    assert re.search(message, result.cause), result.cause
    assert not has(engine, keys.grove(run_id, 0))


def test_weights_with_row_sampling_or_as_a_feature_are_refused_by_name() -> None:
    base = {"data": {"uri": "data.csv", "target": "y", "weight": "w"}}
    with pytest.raises(InvalidRequest, match=r"data.weight='w' cannot be combined with rows_per"):
        parse_train_request({**base, "rows_per_grove": 100})
    with pytest.raises(InvalidRequest, match=r"data.weight 'w' is listed in data.features"):
        parse_train_request({"data": {**base["data"], "features": ["a", "w"]}})
    with pytest.raises(InvalidRequest, match=r"data.weight 'w' is the target"):
        parse_train_request({"data": {**base["data"], "target": "w"}})
    with pytest.raises(InvalidRequest, match=r"belongs in the data section, as data.weight"):
        parse_train_request({"data": {"uri": "data.csv", "target": "y"}, "weight": "w"})
    # and a request without weights is recorded as before data.weight existed
    plain = parse_train_request({"data": {"uri": "data.csv", "target": "y"}})
    assert "weight" not in plain.to_dict()["data"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    with Local(workers=2, state_dir=tmp_path_factory.mktemp("groveflow-weights")) as running:
        yield running


def _refit_fit(model: Any, estimator_class: Any, X: np.ndarray, y: np.ndarray, w: Any) -> Any:
    """scikit-learn's ``estimator_class`` refitted grove by grove from an estimator's fit (its
    manifest's seeds and parameters) on the rows it trained on (``test_fraction`` 0: all, in
    order), with weights ``w``."""
    manifest = json.loads((model.run_.model_dir / "manifest.json").read_text())
    return _refit(manifest, estimator_class, X, y, w)


def _refit(
    manifest: dict[str, Any], estimator_class: Any, X: np.ndarray, y: np.ndarray, w: Any
) -> Any:
    """``estimator_class`` fitted on ``X, y`` with weights ``w`` from each grove's seed in
    ``manifest``, the groves' trees concatenated."""
    reference = None
    for grove in manifest["groves"]:
        fitted = estimator_class(
            n_estimators=grove["n_trees"], random_state=grove["seed"], **manifest["params"]
        ).fit(X.astype(np.float32), y, sample_weight=w)
        if reference is None:
            reference = fitted
        else:
            reference.estimators_ += fitted.estimators_
    assert reference is not None
    reference.n_estimators = len(reference.estimators_)
    return reference


def test_a_sample_weighted_classifier_is_scikit_learns_forest_of_the_same_trees(
    local: Local,
) -> None:
    # GIVEN n_estimators (scikit-learn's name), class_weight and sample weights with zeros
    bunch = load_wine()
    X, y = bunch.data, bunch.target
    w = _some_weights(len(y))
    model = GroveForestClassifier(
        n_estimators=50, class_weight="balanced", random_state=7, engine=local
    )
    # WHEN it fits with the weights
    model.fit(X, y, sample_weight=w)
    # THEN it has 50 trees, and equals scikit-learn's forest of the same seeds and weights
    assert model.forest_.n_trees == 50
    reference = _refit_fit(model, RandomForestClassifier, X, y, w)
    assert np.abs(model.predict_proba(X) - reference.predict_proba(X)).max() == 0
    # and not the forest those seeds give without the weights
    unweighted = _refit_fit(model, RandomForestClassifier, X, y, None)
    assert np.abs(model.predict_proba(X) - unweighted.predict_proba(X)).max() > 0


def test_a_sample_weighted_extra_trees_regressor_is_scikit_learns(local: Local) -> None:
    X, y = load_diabetes(return_X_y=True)
    w = _some_weights(len(y))
    model = GroveForestRegressor(
        n_estimators=12, kind="extra_trees", max_depth=6, random_state=3, engine=local
    ).fit(X, y, sample_weight=w)
    reference = _refit_fit(model, ExtraTreesRegressor, X, y, w)
    assert np.abs(model.predict(X) - reference.predict(X)).max() == 0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.array([1.0, -1.0] * 5), r"1?5? ?weights are negative \(rows \[1, 3, 5, 7, 9\]"),
        (np.array([1.0, np.nan] * 5), r"weights are missing \(NaN\)"),
        (np.array([1.0, np.inf] * 5), r"weights are infinite"),
        (np.zeros(10), r"every weight is 0"),
        (np.array(["a"] * 10), r"must hold numbers"),
        (np.ones(11), r"one weight per sample of X \(10\), got shape \(11,\)"),
    ],
)
def test_bad_sample_weights_are_refused_by_name(weights: np.ndarray, message: str) -> None:
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10) % 2
    for model in (GroveForestClassifier(n_estimators=2), GroveForestRegressor(n_estimators=2)):
        with pytest.raises(InvalidParameter, match=r"\.fit\(sample_weight=\.\.\.\).*" + message):
            model.fit(X, y, sample_weight=weights)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (GroveForestClassifier, RandomForestClassifier),
        (GroveForestClassifier, ExtraTreesClassifier),
        (GroveForestRegressor, RandomForestRegressor),
        (GroveForestRegressor, ExtraTreesRegressor),
    ],
)
def test_the_estimators_take_every_parameter_of_scikit_learns_forests(
    ours: Any, theirs: Any
) -> None:
    # GIVEN scikit-learn's forest parameters, every one at a value other than its default
    # that groveflow trains (n_estimators=50, verbose=1)
    names = set(theirs().get_params())
    # THEN ours takes them all by the same names
    assert names <= set(ours().get_params())
    model = ours(n_estimators=50, verbose=1)
    assert model._n_trees() == 50


def test_what_the_estimators_cannot_do_is_refused_by_name() -> None:
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10) % 2
    with pytest.raises(InvalidParameter, match=r"warm_start=True\) is not supported"):
        GroveForestClassifier(warm_start=True).fit(X, y)
    with pytest.raises(
        InvalidParameter, match=r"oob_score=<built-in function len>\): a scoring function"
    ):
        GroveForestClassifier(oob_score=len).fit(X, y)
    with pytest.raises(InvalidParameter, match=r"n_trees is another name for n_estimators"):
        GroveForestRegressor(n_estimators=50, n_trees=20).fit(X, y)
    with pytest.raises(InvalidParameter, match=r"n_estimators=0\): the number of trees"):
        GroveForestRegressor(n_estimators=0).fit(X, y)
    with pytest.raises(InvalidParameter, match=r"got \['weights'\], which it does not take"):
        GroveForestClassifier().fit(X, y, weights=np.ones(10))


def _weighted_request(**top: Any) -> Any:
    data = {"uri": "table.csv", "target": "y", "weight": "w"}
    return parse_train_request({"data": data, "model": {"task": "regression"}, **top})


def test_weights_zero_on_every_training_row_are_refused_by_name() -> None:
    # GIVEN weights whose only non-zero one falls on a held-out row
    request = _weighted_request(test_fraction=0.5)
    y = np.arange(10.0)
    _, held_out = split_rows(y, request)
    weight = np.zeros(10)
    weight[held_out[0]] = 1.0
    dataset = Dataset(X=np.ones((10, 2), np.float32), y=y, feature_names=["a", "b"], weight=weight)
    # WHEN the plan splits the rows, THEN it refuses them by name
    with pytest.raises(InvalidDataset, match=r"training rows' weights \(data.weight='w'\): every"):
        split_dataset(dataset, request)


def test_weights_in_a_search_or_in_row_shards_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "part-00000.gfcols").write_bytes(b"0" * 1024)
    request = _weighted_request(data={"uri": str(tmp_path), "target": "y", "weight": "w"})
    spec = replace(request.data, format="columns")
    common: dict[str, Any] = {
        "builder_memory_mb": 3008,
        "builder_reserved_concurrency": None,
        "started": 0.0,
    }
    # GIVEN a search's plan (which holds its split in one function)
    with pytest.raises(InvalidRequest, match=r"a search does not fit its candidates with sample"):
        read_and_check(request, spec, ingested=True, whole_only=True, **common)
    # GIVEN ingested data larger than the plan holds whole (so it would go to row shards)
    with pytest.raises(DatasetTooLarge, match=r"row shards carry no weights.*larger than the plan"):
        read_and_check(request, spec, ingested=True, plan_memory_mb=1, **common)


def test_a_weighted_oob_score_is_scikit_learns(local: Local) -> None:
    from groveflow.layout import grove_seeds

    # GIVEN one grove of 32 trees (one scikit-learn fit), weighted, with oob_score
    bunch = load_wine()
    X, y = bunch.data, bunch.target
    w = _some_weights(len(y))
    ours = GroveForestClassifier(
        n_estimators=32, grove_size=32, oob_score=True, random_state=4, engine=local
    ).fit(X, y, sample_weight=w)
    # WHEN scikit-learn fits the same trees with the same weights and oob_score=True
    theirs = RandomForestClassifier(
        n_estimators=32, random_state=grove_seeds(4, 1)[0], oob_score=True
    ).fit(X.astype(np.float32), y, sample_weight=w)
    # THEN the OOB score (unweighted, as scikit-learn's) and OOB probabilities are its own
    assert ours.oob_score_ == theirs.oob_score_
    np.testing.assert_array_equal(ours.oob_decision_function_, theirs.oob_decision_function_)

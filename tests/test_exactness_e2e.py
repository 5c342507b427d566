"""Exactness through the state machine, against scikit-learn forests refitted independently.

Each run goes through Plan, the grove Map and Merge; the reference is scikit-learn's own
estimator class, fitted grove by grove with the manifest's seeds and the run's parameters
on the stored training split, its trees concatenated. The stored forest, the predictions
parts written by the shards, ``to_sklearn()`` and the files ``groveflow export`` writes
(loaded back with joblib and skops) must all answer exactly as the reference does.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, unique_name
from evidence import body, refit_from_seeds
from evidence import stored_npy as _npy
from groveflow.artifact import load_forest
from groveflow.layout import keys


def _wine_csv(path: Path) -> np.ndarray:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    labels = np.array(["barolo", "grignolino", "barbera"])[bunch.target]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(13)] + ["cultivar"])
        for row, label in zip(bunch.data, labels, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [label])
    return bunch.data.astype(np.float32)


def _export(run_id: str, state_dir: Path, fmt: str, out: Path) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "groveflow.cli", "export", run_id, "--format", fmt,
         "--state-dir", str(state_dir), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if fmt == "joblib":
        import joblib

        return joblib.load(out)
    import skops.io

    return skops.io.load(out, trusted=skops.io.get_untrusted_types(file=out))


def test_extra_trees_regression_with_parameters_equals_scikit_learns_refit(
    engine: Any, state_dir: Path, tmp_path: Path
) -> None:
    from sklearn.ensemble import ExtraTreesRegressor

    # GIVEN an ExtraTrees regression with parameters, trained through the state machine
    run_id = unique_name("exact-et")
    params = {"min_samples_leaf": 2, "max_features": 0.5, "max_depth": 9, "bootstrap": True}
    request = {
        "data": {"uri": "sklearn:diabetes"},
        "model": {"kind": "extra_trees", "task": "regression", "params": params},
        "n_trees": 6,
        "grove_size": 2,
        "seed": 21,
        "run_id": run_id,
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # WHEN scikit-learn refits it from the manifest's seeds
    reference = refit_from_seeds(engine, run_id, ExtraTreesRegressor)
    X_test = _npy(engine, keys.split(run_id, "X_test"))
    expected = reference.predict(X_test)
    # THEN the stored forest, to_sklearn() and the exported joblib file answer exactly as it does
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    np.testing.assert_array_equal(forest.predict(X_test), expected)
    np.testing.assert_array_equal(forest.apply(X_test), reference.apply(X_test))
    np.testing.assert_array_equal(
        forest.to_sklearn("extra_trees", params).predict(X_test), expected
    )
    exported = _export(run_id, state_dir, "joblib", tmp_path / "m.joblib")
    assert type(exported) is ExtraTreesRegressor
    np.testing.assert_array_equal(exported.predict(X_test), expected)


def test_string_labels_class_weight_and_max_samples_equal_scikit_learns_refit(
    engine: Any, state_dir: Path, tmp_path: Path
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    # GIVEN string labels, class_weight and max_samples, trained and scored in shards
    path = tmp_path / "wine.csv"
    X_all = _wine_csv(path)
    run_id = unique_name("exact-rf")
    params = {"class_weight": "balanced", "max_samples": 0.5, "min_samples_split": 3}
    request = {
        "data": {"uri": str(path), "target": "cultivar"},
        "model": {"kind": "random_forest", "task": "classification", "params": params},
        "n_trees": 6,
        "grove_size": 2,
        "seed": 8,
        "run_id": run_id,
        "predict": {
            "data": {"uri": str(path), "exclude": ["cultivar"]},
            "shard_rows": 60,
            "probabilities": True,
        },
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # WHEN scikit-learn refits it from the manifest's seeds
    reference = refit_from_seeds(engine, run_id, RandomForestClassifier)
    assert reference.classes_.tolist() == ["barbera", "barolo", "grignolino"]
    expected, proba = reference.predict(X_all), reference.predict_proba(X_all)
    # THEN the shards' predictions parts hold its labels and probabilities, row for row
    rows = _prediction_rows(engine, result.output["predictions"]["predictions_uri"])
    assert [int(r["row"]) for r in rows] == list(range(len(X_all)))
    assert [r["prediction"] for r in rows] == expected.tolist()
    written = np.array([[float(r[f"proba_{c}"]) for c in reference.classes_] for r in rows])
    np.testing.assert_array_equal(written, proba)
    # and to_sklearn() and the exported skops file answer exactly as it does
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    np.testing.assert_array_equal(
        forest.to_sklearn("random_forest", params).predict_proba(X_all), proba
    )
    exported = _export(run_id, state_dir, "skops", tmp_path / "m.skops")
    assert type(exported) is RandomForestClassifier
    np.testing.assert_array_equal(exported.predict(X_all), expected)
    np.testing.assert_array_equal(exported.predict_proba(X_all), proba)


def _prediction_rows(engine: Any, predictions_uri: str) -> list[dict[str, str]]:
    key = predictions_uri.removeprefix(f"s3://{engine.bucket}/")
    manifest = json.loads(body(engine, key))
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        rows.extend(csv.DictReader(io.StringIO(body(engine, f"{prefix}/{part['key']}").decode())))
    return rows


@pytest.fixture(autouse=True)
def _exports_need_skops() -> None:
    pytest.importorskip("skops")

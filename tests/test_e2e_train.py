"""End to end: the real train state machine on the local engine."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, load_event, unique_name
from groveflow.artifact import decode_trees
from groveflow.layout import keys
from groveflow.local import LocalEngine
from groveflow.local.faults import Fault, FaultInjector


def _train(engine: Any, request: dict[str, Any], prefix: str = "run") -> Any:
    run_id = unique_name(prefix)
    return engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id), run_id


def _object(engine: Any, key: str) -> bytes:
    body: bytes = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    return body


def _exists(engine: Any, key: str) -> bool:
    listing = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=key)
    return listing.get("KeyCount", 0) > 0


@pytest.fixture(scope="module")
def digits_run(engine: Any) -> tuple[Any, str]:
    return _train(engine, load_event("train-digits.json"), "digits")


def test_digits_run_trains_an_accurate_forest(digits_run: tuple[Any, str]) -> None:
    # GIVEN the example input (100 trees in groves of 10 on digits)
    # WHEN it runs through the state machine
    result, run_id = digits_run
    # THEN it succeeds with every tree and a holdout accuracy of at least 0.95
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["trees_built"] == 100
    assert result.output["groves_built"] == 10
    assert result.output["metrics"]["accuracy"] >= 0.95
    assert result.output["model_uri"].endswith(f"runs/{run_id}/model/manifest.json")


def test_run_goes_through_plan_one_child_per_grove_and_merge(
    engine: Any, digits_run: tuple[Any, str]
) -> None:
    result, _ = digits_run
    history = engine.history(result.execution_arn)
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    ]
    assert entered == [
        "PrepareData",
        "NoConversion",
        "Plan",
        "BuildGroves",
        "Merge",
        "GrowAgain",  # n_trees="auto" loops from here (issue 19); a fixed n_trees goes on
        "PredictRequested",
        "Trained",
    ]
    assert any(e["type"] == "MapRunStarted" for e in history)
    functions = [i.function for i in result.invocations]
    assert functions[0] == "PlanFunction" and functions[-1] == "MergeFunction"
    groves = sorted(
        i.payload["grove"] for i in result.invocations if i.function == "BuildGroveFunction"
    )
    assert groves == list(range(10))


def test_model_is_mirrored_to_disk(engine: Any, digits_run: tuple[Any, str]) -> None:
    _, run_id = digits_run
    manifest = json.loads((engine.run_dir(run_id) / "model" / "manifest.json").read_text())
    assert manifest["trees_built"] == 100
    assert (
        engine.run_dir(run_id) / "model" / manifest["forest"]["key"]
    ).stat().st_size == manifest["forest"]["bytes"]


def test_same_input_gives_byte_identical_forest(engine: Any, digits_run: tuple[Any, str]) -> None:
    _, first = digits_run
    again, second = _train(engine, load_event("train-digits.json"), "digits-again")
    assert again.status == "SUCCEEDED"
    assert _object(engine, keys.forest(first)) == _object(engine, keys.forest(second))


def test_one_worker_and_two_workers_give_the_same_forest(state_dir: Any) -> None:
    request = {**load_event("train-digits.json"), "n_trees": 24, "grove_size": 4}
    forests = []
    for workers in (1, 2):
        with LocalEngine(ROOT, workers=workers, state_dir=state_dir) as engine:
            result, run_id = _train(engine, request, f"workers{workers}")
            assert result.status == "SUCCEEDED"
            forests.append(_object(engine, keys.forest(run_id)))
    assert forests[0] == forests[1]


def test_merged_forest_equals_sklearn_forests_fitted_with_recorded_seeds(
    engine: Any, digits_run: tuple[Any, str]
) -> None:
    # GIVEN the trained digits run and its recorded per-grove seeds
    from sklearn.ensemble import RandomForestClassifier

    _, run_id = digits_run
    manifest = json.loads(_object(engine, keys.manifest(run_id)))
    X_train = _npy(engine, keys.split(run_id, "X_train"))
    y_train = _npy(engine, keys.split(run_id, "y_train"))
    X_test = _npy(engine, keys.split(run_id, "X_test"))
    # WHEN scikit-learn fits each grove directly with its seed, and the trees are concatenated
    reference = None
    for grove in manifest["groves"]:
        fitted = RandomForestClassifier(
            n_estimators=grove["n_trees"], random_state=grove["seed"], n_jobs=1
        )
        fitted.fit(X_train, y_train)
        if reference is None:
            reference = fitted
        else:
            reference.estimators_ += fitted.estimators_
    assert reference is not None
    reference.n_estimators = len(reference.estimators_)
    # THEN the merged forest's leaves and probabilities are exactly the same
    forest = decode_trees(_object(engine, keys.forest(run_id)))
    np.testing.assert_array_equal(forest.apply(X_test), reference.apply(X_test))
    np.testing.assert_array_equal(forest.predict_proba(X_test), reference.predict_proba(X_test))


def _npy(engine: Any, key: str) -> np.ndarray:
    import io

    return np.load(io.BytesIO(_object(engine, key)), allow_pickle=False)


def test_a_grove_that_keeps_failing_fails_the_run_without_a_manifest(state_dir: Any) -> None:
    # GIVEN an engine where every attempt of one grove runs out of memory
    class OneGroveOutOfMemory(FaultInjector):
        def decide(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
            hit = function == "BuildGroveFunction" and payload.get("grove") == 3
            return Fault("oom") if hit else None

    request = {**load_event("train-digits.json"), "n_trees": 20, "grove_size": 4}
    with LocalEngine(ROOT, workers=2, state_dir=state_dir, faults=OneGroveOutOfMemory()) as engine:
        # WHEN a run is started
        result, run_id = _train(engine, request, "crashing")
        # THEN it fails with a named error, after retrying the grove, and leaves no model
        assert result.status == "FAILED"
        assert result.error == "States.ExceedToleratedFailureThreshold", (
            result.error,
            result.cause,
        )
        attempts = [
            i
            for i in result.invocations
            if i.function == "BuildGroveFunction" and i.payload["grove"] == 3
        ]
        # out of memory is deterministic: one attempt and one retry (statemachine/train.asl.json)
        assert len(attempts) == 2
        assert not _exists(engine, keys.model_prefix(run_id))
        assert not any(i.function == "MergeFunction" for i in result.invocations)


def test_functions_log_json_lines_with_run_and_grove_ids(
    engine: Any, digits_run: tuple[Any, str]
) -> None:
    # GIVEN the digits run, WHEN its functions' log is read (the local engine's CloudWatch)
    _, run_id = digits_run
    lines = [
        json.loads(line)
        for line in engine.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    built = [
        line
        for line in lines
        if line.get("message") == "grove built" and line.get("run_id") == run_id
    ]
    # THEN every grove logged a structured line naming its run and grove, and a metric
    assert sorted(line["grove"] for line in built) == list(range(10))
    assert all(line["function_name"] == "BuildGroveFunction" for line in built)
    emitted = [line for line in lines if "_aws" in line and "GroveSeconds" in line]
    assert len(emitted) >= 10

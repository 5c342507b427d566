"""Growing a trained forest: the same run id and input with more trees builds only the new
groves, keeps every earlier grove byte for byte, and gives a fresh run's forest."""

from __future__ import annotations

import itertools
import json
from typing import Any

from conftest import unique_name
from evidence import body
from groveflow.layout import keys

WINE = {
    "data": {"uri": "sklearn:wine"},
    "model": {"params": {"oob_score": True, "min_samples_leaf": 2}},
    "grove_size": 10,
    "seed": 17,
}


def _run(engine: Any, run_id: str, n_trees: int) -> Any:
    request = {**WINE, "n_trees": n_trees, "run_id": run_id}
    return engine.run("TrainStateMachine", request, name=unique_name(run_id))


def _builds(result: Any) -> list[int]:
    return sorted(
        i.payload["grove"]
        for i in result.invocations
        if i.function == "BuildGroveFunction" and i.error_type is None
    )


def _manifest(engine: Any, run_id: str) -> dict[str, Any]:
    return json.loads(body(engine, keys.manifest(run_id)))


def test_growing_50_to_100_trees_builds_only_the_new_groves_and_equals_a_fresh_run(
    engine: Any,
) -> None:
    # GIVEN a 50-tree forest (5 groves of 10)
    run_id = unique_name("grow")
    first = _run(engine, run_id, 50)
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    before = {g["grove"]: g["sha256"] for g in _manifest(engine, run_id)["groves"]}
    # WHEN the same input asks for 100 trees
    grown = _run(engine, run_id, 100)
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    # THEN exactly the 5 new groves were built, the 5 earlier ones kept byte for byte
    assert _builds(grown) == [5, 6, 7, 8, 9]
    after = _manifest(engine, run_id)
    assert {g["grove"]: g["sha256"] for g in after["groves"][:5]} == before
    assert after["trees_built"] == after["trees_requested"] == 100
    # and the forest (and its OOB score) are a fresh 100-tree run's, byte for byte
    fresh_id = unique_name("grow-fresh")
    fresh = _run(engine, fresh_id, 100)
    assert fresh.status == "SUCCEEDED", (fresh.error, fresh.cause)
    fresh_manifest = _manifest(engine, fresh_id)
    assert body(engine, keys.forest_of(after)) == body(engine, keys.forest_of(fresh_manifest))
    assert after["oob"]["metrics"] == fresh_manifest["oob"]["metrics"]


def test_a_partial_last_grove_is_rebuilt_at_its_new_size(engine: Any) -> None:
    # GIVEN 45 trees: four groves of 10 and a last one of 5
    run_id = unique_name("grow-partial")
    assert _run(engine, run_id, 45).status == "SUCCEEDED"
    before = [g["sha256"] for g in _manifest(engine, run_id)["groves"]]
    # WHEN it grows to 62
    grown = _run(engine, run_id, 62)
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    # THEN grove 4 is rebuilt with 10 trees and groves 5 and 6 are new; 0-3 are kept
    assert _builds(grown) == [4, 5, 6]
    groves = _manifest(engine, run_id)["groves"]
    assert [g["sha256"] for g in groves[:4]] == before[:4]
    assert groves[4]["sha256"] != before[4]
    assert [g["n_trees"] for g in groves] == [10, 10, 10, 10, 10, 10, 2]


def test_a_forest_does_not_shrink_and_other_changes_are_refused(engine: Any) -> None:
    run_id = unique_name("grow-shrink")
    assert _run(engine, run_id, 20).status == "SUCCEEDED"
    smaller = _run(engine, run_id, 10)
    assert smaller.status == "FAILED"
    assert smaller.error == "InvalidRequest"
    assert "grows but does not shrink" in smaller.cause
    other = engine.run(
        "TrainStateMachine",
        {**WINE, "n_trees": 30, "seed": 18, "run_id": run_id},
        name=unique_name(run_id),
    )
    assert other.status == "FAILED"
    assert "already used with a different input" in other.cause
    assert _builds(smaller) == _builds(other) == []
    assert _manifest(engine, run_id)["trees_built"] == 20


def test_auto_grows_in_rounds_until_the_oob_score_stops_improving(engine: Any) -> None:
    # GIVEN n_trees="auto": rounds of 10 trees up to 60, stopping below a 0.02 gain
    run_id = unique_name("grow-auto")
    request = {
        **WINE,
        "n_trees": "auto",
        "round_trees": 10,
        "max_trees": 60,
        "oob_tolerance": 0.02,
        "run_id": run_id,
    }
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    auto = _manifest(engine, run_id)["auto"]
    rounds = auto["rounds"]
    # THEN each round added 10 trees and built only its own groves
    assert [r["n_trees"] for r in rounds] == list(range(10, 10 * len(rounds) + 1, 10))
    assert _builds(result) == list(range(len(rounds)))
    # and it stopped for a recorded reason: a gain below the tolerance, or max_trees
    gains = [b["oob_score"] - a["oob_score"] for a, b in itertools.pairwise(rounds)]
    if rounds[-1]["n_trees"] < 60:
        assert gains[-1] < 0.02 and all(g >= 0.02 for g in gains[:-1])
        assert "less than oob_tolerance=0.02" in auto["stopped"]
    else:
        assert auto["stopped"] == "max_trees=60 reached"
    assert result.output["trees_built"] == rounds[-1]["n_trees"]
    # and the forest is a fresh run's with that many trees
    fresh_id = unique_name("grow-auto-fresh")
    fresh = _run(engine, fresh_id, rounds[-1]["n_trees"])
    assert fresh.status == "SUCCEEDED"
    fresh_forest = keys.forest_of(_manifest(engine, fresh_id))
    assert body(engine, keys.forest_of(_manifest(engine, run_id))) == body(engine, fresh_forest)


def test_auto_without_oob_is_refused_by_name() -> None:
    import pytest

    from groveflow.errors import InvalidRequest
    from groveflow.request import parse_train_request

    with pytest.raises(InvalidRequest, match="oob_score=true"):
        parse_train_request({"data": {"uri": "sklearn:iris"}, "n_trees": "auto"})
    with pytest.raises(InvalidRequest, match="apply only with n_trees='auto'"):
        parse_train_request({"data": {"uri": "sklearn:iris"}, "max_trees": 40})


def test_an_auto_run_resumed_replays_its_rounds_on_the_stored_groves(engine: Any) -> None:
    # GIVEN a finished n_trees="auto" run of several rounds
    run_id = unique_name("grow-auto-again")
    request = {
        **WINE,
        "n_trees": "auto",
        "round_trees": 10,
        "max_trees": 30,
        "oob_tolerance": 0,
        "run_id": run_id,
    }
    first = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    before = _manifest(engine, run_id)
    forest = body(engine, keys.forest_of(before))
    # WHEN the same input runs again (as a resume after a crash in a later round would)
    again = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    # THEN it replays the rounds on the stored groves, fitting none, to the same model
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    builds = [i for i in again.invocations if i.function == "BuildGroveFunction"]
    assert builds and all(i.output["reused"] for i in builds)
    after = _manifest(engine, run_id)
    assert after["auto"]["rounds"] == before["auto"]["rounds"]
    assert body(engine, keys.forest_of(after)) == forest


def test_a_grow_whose_merge_fails_leaves_the_stored_model_whole(engine: Any) -> None:
    from evidence import At, faults
    from groveflow.artifact import load_forest
    from groveflow.local.faults import Fault

    # GIVEN a stored 20-tree model
    run_id = unique_name("grow-kept")
    assert _run(engine, run_id, 20).status == "SUCCEEDED"
    before = _manifest(engine, run_id)
    # WHEN growing it to 30 trees dies in the merge after the new forest is stored and
    # before its manifest (every attempt)
    crash = Fault("crash", "before:runs/*/model/manifest.json")
    with faults(engine, At("MergeFunction", crash, attempts=(1, 2, 3, 4))):
        failed = _run(engine, run_id, 30)
    assert failed.status == "FAILED"
    # THEN the stored model is the old one, whole: its manifest and files verify
    assert _manifest(engine, run_id) == before
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.n_trees == 20
    # AND growing it again succeeds and replaces its files (the old forest is deleted)
    grown = _run(engine, run_id, 30)
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    after = _manifest(engine, run_id)
    assert after["forest"]["key"] != before["forest"]["key"]
    names = {p.name for p in (engine.run_dir(run_id) / "model").iterdir()}
    assert before["forest"]["key"] not in names and after["forest"]["key"] in names


def test_growing_past_max_cost_usd_is_refused_before_any_grove(engine: Any) -> None:
    # GIVEN a stored 10-tree model
    run_id = unique_name("grow-capped")
    assert _run(engine, run_id, 10).status == "SUCCEEDED"
    before = _manifest(engine, run_id)
    # WHEN it is grown to 300 trees under a cap far below what 29 more groves cost
    request = {**WINE, "n_trees": 300, "run_id": run_id, "max_cost_usd": 1e-9}
    refused = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    # THEN the plan refuses it by name, builds nothing and leaves the model as it was
    assert (refused.status, refused.error) == ("FAILED", "BudgetExceeded")
    assert "growing the forest by 29 groves" in str(refused.cause)
    assert _builds(refused) == []
    assert _manifest(engine, run_id) == before


def test_a_resume_may_change_how_the_run_runs_but_not_its_model(engine: Any) -> None:
    run_id = unique_name("resume-settings")
    assert _run(engine, run_id, 20).status == "SUCCEEDED"
    before = _manifest(engine, run_id)
    # WHEN the same model is asked for with other concurrency and tolerated failures
    request = {
        **WINE,
        "n_trees": 20,
        "run_id": run_id,
        "max_concurrency": 1,
        "tolerated_failure_percentage": 50,
    }
    again = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    # THEN it resumes (nothing refit) to the same forest, under the new settings
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    builds = [i for i in again.invocations if i.function == "BuildGroveFunction"]
    assert builds and all(i.output["reused"] for i in builds)
    assert _manifest(engine, run_id)["forest"] == before["forest"]
    record = json.loads(body(engine, keys.request(run_id)))
    assert record["request"]["tolerated_failure_percentage"] == 50

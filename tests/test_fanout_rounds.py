"""``n_trees: "auto"`` cannot run past Step Functions' 25,000-event history (issue 27).

Each further round adds :data:`groveflow.request.HISTORY_EVENTS_PER_ROUND` events, counted
here from the train ASL and from a real local run's history; a request that may take more
than :data:`groveflow.request.MAX_AUTO_ROUNDS` rounds is refused when parsed, so by
ValidateRequest (CSV, Parquet) or the Plan, before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, unique_name
from groveflow import request as request_module
from groveflow.errors import InvalidRequest
from groveflow.request import (
    HISTORY_EVENT_LIMIT,
    HISTORY_EVENTS_PER_ROUND,
    HISTORY_EVENTS_RESERVED,
    MAX_AUTO_ROUNDS,
    parse_train_request,
)

EVENTS_PER_STATE = {"Task": 5, "Choice": 2, "Pass": 2}
"""A state's events in an execution's history without retries: entered and exited, and a
task's scheduled, started and succeeded between."""
EVENTS_PER_DISTRIBUTED_MAP = 6
"""Entered, started, its map run started and succeeded, succeeded, exited (the children's
events are in their own executions' histories)."""


def _events(state: dict[str, Any]) -> int:
    if state["Type"] == "Map":
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        return EVENTS_PER_DISTRIBUTED_MAP
    return EVENTS_PER_STATE[state["Type"]]


def _auto(max_trees: int, round_trees: int, **more: Any) -> dict[str, Any]:
    return {
        "data": {"uri": "sklearn:iris"},
        "n_trees": "auto",
        "max_trees": max_trees,
        "round_trees": round_trees,
        "model": {"params": {"oob_score": True}},
        **more,
    }


def test_a_round_costs_the_events_its_states_enter_in_the_train_asl() -> None:
    # GIVEN the train state machine's loop: GrowRound ... GrowAgain, back to GrowRound
    states = json.loads((ROOT / "statemachine" / "train.asl.json").read_text())["States"]
    # WHEN one round is walked, adding each state's events
    name, events, passed = "GrowRound", 0, []
    while True:
        state = states[name]
        events += _events(state)
        passed.append(name)
        if state["Type"] == "Choice":
            name = next(c["Next"] for c in state["Choices"] if c["Next"] == "GrowRound")
        else:
            name = state["Next"]
        if name == "GrowRound":
            break
    # THEN it is the constant the request is checked with
    assert passed == ["GrowRound", "BuildGroves", "Merge", "GrowAgain"]
    assert events == HISTORY_EVENTS_PER_ROUND


def test_a_round_costs_as_many_events_in_a_local_runs_history(engine: Any) -> None:
    # GIVEN an n_trees="auto" run of two rounds (the first always goes on; the second
    # reaches max_trees)
    run_id = unique_name("rounds")
    result = engine.run(
        "TrainStateMachine", {**_auto(4, 2, grove_size=2), "run_id": run_id}, name=run_id
    )
    assert result.status == "SUCCEEDED", result.cause
    # WHEN its history is read, state by state
    history = engine.history(result.execution_arn)

    def named(event: dict[str, Any]) -> str | None:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        return None if details is None else f"{event['type']} {details['name']}"

    names = [named(e) for e in history]
    start = names.index("TaskStateEntered GrowRound")
    end = len(names) - names[::-1].index("ChoiceStateExited GrowAgain")
    # THEN its one further round holds the computed events, and the run two rounds' worth
    assert names.count("TaskStateEntered GrowRound") == 1
    assert end - start == HISTORY_EVENTS_PER_ROUND
    assert names.count("TaskStateEntered Merge") == 2


def test_the_bound_keeps_the_history_under_step_functions_limit() -> None:
    assert MAX_AUTO_ROUNDS == 1111
    assert MAX_AUTO_ROUNDS * HISTORY_EVENTS_PER_ROUND + HISTORY_EVENTS_RESERVED <= 25_000
    assert HISTORY_EVENT_LIMIT == 25_000


def test_more_rounds_than_the_bound_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bound reduced to 3 rounds
    monkeypatch.setattr(request_module, "MAX_AUTO_ROUNDS", 3)
    # THEN 3 rounds of 2 trees are accepted
    assert parse_train_request(_auto(6, 2)).auto is not None
    # AND 4 are refused, naming the rounds, the limit and the round_trees that would fit
    with pytest.raises(InvalidRequest) as refused:
        parse_train_request(_auto(7, 2))
    message = str(refused.value)
    assert "max_trees=7 and round_trees=2 may grow in 4 rounds, more than the 3" in message
    assert "25,000 events" in message and "raise round_trees to at least 3" in message


def test_a_run_of_too_many_rounds_is_refused_at_validate_request(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN CSV data (which ValidateRequest checks before Ingest) and 2,000 possible rounds
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = ["a,b,c,d,label"] + [
        ",".join([*map(str, row), str(label)])
        for row, label in zip(iris.data, iris.target, strict=True)
    ]
    path = tmp_path / "iris.csv"
    path.write_text("\n".join(lines) + "\n")
    request = _auto(20_000, 10, grove_size=10)
    request["data"] = {"uri": str(path), "target": "label"}
    run_id = unique_name("too-many-rounds")
    # WHEN it is started
    result = engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
    # THEN ValidateRequest refuses it by name, before anything is read
    assert result.status == "FAILED"
    assert result.error == "InvalidRequest"
    assert f"more than the {MAX_AUTO_ROUNDS} that Step Functions' history" in result.cause
    assert [i.function for i in result.invocations] == ["ValidateRequestFunction"]

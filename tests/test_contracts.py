"""Contracts of the state machines and the example inputs.

Every Lambda task in every state machine retries Lambda's own errors, not the user's; every
stage ends in a named Fail state when it fails; every file in events/ is a valid request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
}
# Errors a user causes: retrying them only delays the same failure.
USER_ERRORS = {
    "States.ALL",
    "States.TaskFailed",
    "InvalidRequest",
    "InvalidDataset",
    "GroveMissing",
}
MACHINES = sorted((ROOT / "statemachine").glob("*.asl.json"))


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every state with the states beside it, descending into Map processors."""
    for name, state in states.items():
        yield name, state, states
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor["States"])


def _tasks(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    definition = json.loads(path.read_text())
    return [
        (n, s, siblings) for n, s, siblings in _states(definition["States"]) if s["Type"] == "Task"
    ]


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_every_task_retries_lambda_errors_with_capped_jittered_backoff(path: Path) -> None:
    tasks = _tasks(path)
    assert tasks
    for name, task, _ in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert 0 < task["TimeoutSeconds"] <= 1000, name
        service = [r for r in task["Retry"] if set(r["ErrorEquals"]) >= LAMBDA_ERRORS]
        assert len(service) == 1, name
        assert service[0]["JitterStrategy"] == "FULL", name
        assert service[0]["BackoffRate"] > 1 and service[0]["MaxDelaySeconds"] > 0, name
        retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
        assert not retried & USER_ERRORS, (name, retried & USER_ERRORS)


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_every_stage_catches_into_a_named_fail_state(path: Path) -> None:
    definition = json.loads(path.read_text())
    top = definition["States"]
    for name, state in top.items():
        if state["Type"] not in {"Task", "Map"}:
            continue
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        fail = top[catch["Next"]]
        assert fail["Type"] == "Fail", name
        assert catch["Next"].endswith("Failed"), name
        assert (fail["ErrorPath"], fail["CausePath"]) == ("$.Error", "$.Cause"), name


def test_the_contract_check_fails_on_a_task_that_retries_everything(tmp_path: Path) -> None:
    # GIVEN a copy of the train machine whose Plan retries every error
    definition = json.loads((ROOT / "statemachine" / "train.asl.json").read_text())
    definition["States"]["Plan"]["Retry"].append({"ErrorEquals": ["States.ALL"], "MaxAttempts": 3})
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(definition))
    # THEN the check above rejects it
    with pytest.raises(AssertionError):
        test_every_task_retries_lambda_errors_with_capped_jittered_backoff(broken)


EVENTS = sorted((ROOT / "events").glob("*.json"))


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_every_example_input_is_a_valid_request(path: Path) -> None:
    from groveflow.predict import parse_predict_request
    from groveflow.request import parse_train_request

    value = json.loads(path.read_text())
    if path.name.startswith("predict-"):
        parse_predict_request(value)
    else:
        parse_train_request(value)

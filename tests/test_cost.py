"""The AWS cost estimate: hand-computed prices, billing rules, and a real local run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import unique_name
from groveflow.cost import (
    LAMBDA_USD_PER_GB_SECOND,
    PRICES_AS_OF,
    STEP_FUNCTIONS_USD_PER_TRANSITION,
    child_transitions,
    count_state_transitions,
    estimate_cost,
)


@dataclass(frozen=True)
class _Call:
    duration_ms: float
    memory_mb: int


def test_three_invocations_cost_what_the_price_list_says() -> None:
    # GIVEN 3 invocations of a 1,024 MB function for 1,000, 2,000 and 500 ms, and 10 transitions
    calls = [_Call(1000, 1024), _Call(2000, 1024), _Call(500, 1024)]
    # WHEN they are priced
    cost = estimate_cost(calls, state_transitions=10)
    # THEN by hand: 1 GB x (1 + 2 + 0.5) s = 3.5 GB-s; 3.5 x $0.0000166667 = $0.00005833345;
    # 3 requests x $0.20 / 1M = $0.0000006; 10 transitions x $0.025 / 1,000 = $0.00025
    assert cost.gb_seconds == pytest.approx(3.5, rel=1e-15)
    assert cost.lambda_compute_usd == pytest.approx(0.00005833345, rel=1e-12)
    assert cost.lambda_requests == 3
    assert cost.lambda_request_usd == pytest.approx(0.0000006, rel=1e-12)
    assert cost.state_transitions == 10
    assert cost.step_functions_usd == pytest.approx(0.00025, rel=1e-12)
    # 0.00005833345 + 0.0000006 + 0.00025 = 0.00030893345
    assert cost.total_usd == pytest.approx(0.00030893345, rel=1e-12)
    assert cost.prices_as_of == PRICES_AS_OF


def test_duration_is_billed_rounded_up_to_the_next_millisecond() -> None:
    # GIVEN a 128 MB function that ran 0.4 ms and 1,000.2 ms
    calls = [_Call(0.4, 128), _Call(1000.2, 128)]
    # WHEN priced
    cost = estimate_cost(calls, state_transitions=0)
    # THEN it is billed 1 ms and 1,001 ms: 0.125 GB x 1.002 s = 0.12525 GB-s
    assert cost.gb_seconds == pytest.approx(0.12525, rel=1e-15)
    assert cost.lambda_compute_usd == pytest.approx(0.12525 * 0.0000166667, rel=1e-12)


def test_whole_milliseconds_are_not_rounded_up_further() -> None:
    # 3,008 MB for exactly 250 ms: 3008 / 1024 x 0.25 = 0.734375 GB-s
    assert estimate_cost([_Call(250.0, 3008)], 0).gb_seconds == pytest.approx(0.734375, rel=1e-15)


@pytest.mark.parametrize(
    ("call", "message"),
    [(_Call(-1.0, 128), "duration_ms=-1.0"), (_Call(10.0, 0), "memory_mb=0")],
)
def test_impossible_invocations_are_refused_by_name(call: _Call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_cost([call], state_transitions=0)


def _event(kind: str) -> dict[str, Any]:
    return {"type": kind}


def test_transitions_count_states_entered_retries_and_children() -> None:
    # GIVEN a parent history whose Plan task was retried twice (3 schedulings), then a Map,
    # a Merge task, a Choice and a Succeed state: 5 states entered
    history = [
        _event("ExecutionStarted"),
        _event("TaskStateEntered"),
        *[_event(k) for k in ("TaskScheduled", "TaskStarted", "TaskFailed")] * 2,
        _event("TaskScheduled"),
        _event("TaskSucceeded"),
        _event("TaskStateExited"),
        _event("MapStateEntered"),
        _event("MapRunStarted"),
        _event("MapRunSucceeded"),
        _event("MapStateExited"),
        _event("TaskStateEntered"),
        _event("TaskScheduled"),
        _event("TaskSucceeded"),
        _event("TaskStateExited"),
        _event("ChoiceStateEntered"),
        _event("ChoiceStateExited"),
        _event("SucceedStateEntered"),
        _event("ExecutionSucceeded"),
    ]
    # WHEN counted with 4 children whose task ran 5 times (one retry)
    children = child_transitions(n_children=4, task_attempts=5)
    total = count_state_transitions(history, child_transitions=children)
    # THEN children: 4 starts + 4 task entries + 1 retry = 9; parent: 5 entered + 2 retries = 7
    assert children == 9
    assert total == 7 + 9


def test_a_failed_execution_still_counts_its_last_state_retries() -> None:
    # GIVEN a history that ends inside a task retried once (no exit event)
    history = [_event("TaskStateEntered"), _event("TaskScheduled"), _event("TaskScheduled")]
    # THEN 1 state entered + 1 retry
    assert count_state_transitions(history) == 2


def test_fewer_attempts_than_children_is_refused() -> None:
    with pytest.raises(ValueError, match="task_attempts=2"):
        child_transitions(n_children=3, task_attempts=2)


def test_estimate_serializes_to_json() -> None:
    cost = estimate_cost([_Call(1000, 1024)], state_transitions=4)
    decoded = json.loads(json.dumps(cost.to_dict()))
    assert decoded["gb_seconds"] == 1.0
    assert decoded["state_transitions"] == 4
    assert decoded["total_usd"] == cost.total_usd
    assert decoded["prices_as_of"] == PRICES_AS_OF
    assert decoded["region"] == "us-east-1"


def test_cost_of_a_real_local_run_matches_its_invocations(engine: Any) -> None:
    # GIVEN a small run on the local engine: iris, 6 trees in groves of 2
    run_id = unique_name("cost")
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 6, "grove_size": 2, "run_id": run_id}
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    history = engine.history(result.execution_arn)
    groves = [i for i in result.invocations if i.function == "BuildGroveFunction"]
    assert sorted(i.payload["grove"] for i in groves) == [0, 1, 2]  # one attempt each
    # WHEN its cost is estimated from its invocations and history
    transitions = count_state_transitions(history, child_transitions(3, len(groves)))
    cost = estimate_cost(result.invocations, transitions)
    # THEN GB-seconds is the hand sum of memory (GB) x billed duration: duration plus a cold
    # worker's INIT, rounded up (s)
    by_hand = sum(
        i.memory_mb / 1024 * math.ceil(i.duration_ms + (i.init_ms or 0)) / 1000
        for i in result.invocations
    )
    assert cost.gb_seconds == pytest.approx(by_hand, rel=1e-12)
    assert cost.gb_seconds > 0
    assert cost.lambda_requests == len(result.invocations) == 5  # plan, 3 groves, merge
    assert cost.lambda_compute_usd == pytest.approx(by_hand * LAMBDA_USD_PER_GB_SECOND)
    # AND the transitions are the parent's states entered plus 2 per child (start + task)
    entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
    assert entered >= 4  # Plan, BuildGroves, Merge, and the end state at least
    assert transitions == entered + 2 * 3
    assert cost.step_functions_usd == pytest.approx(transitions * STEP_FUNCTIONS_USD_PER_TRANSITION)


# A cold start's REPORT line as Lambda writes it since August 2025, when INIT began to be
# billed for managed runtimes: Billed Duration = Duration + Init Duration, rounded up.
COLD_REPORT = (
    "REPORT RequestId: 8f5ab9c2-3d4e-4f5a-9b6c-7d8e9f0a1b2c\tDuration: 102.25 ms\t"
    "Billed Duration: 283 ms\tMemory Size: 3008 MB\tMax Memory Used: 171 MB\t"
    "Init Duration: 180.40 ms\t"
)


def test_report_lines_as_lambda_writes_them_are_parsed() -> None:
    from groveflow.cost import Billed, parse_report_line, report_line

    # GIVEN a cold REPORT line in Lambda's own format, and two of ours, warm and cold
    ours_warm = report_line(12.3456, 1024, "r-1", max_memory_mb=140)
    ours_cold = report_line(12.3456, 1024, "r-2", init_ms=180.4, max_memory_mb=171)
    # THEN each gives its durations, the configured memory and the peak used; other
    # lines give nothing
    assert parse_report_line(COLD_REPORT) == Billed(
        duration_ms=102.25,
        memory_mb=3008,
        billed_duration_ms=283,
        init_ms=180.40,
        max_memory_mb=171,
    )
    assert "\tMax Memory Used: 140 MB" in ours_warm
    assert parse_report_line(ours_warm) == Billed(12.35, 1024, 13, None, 140)
    # 12.3456 + 180.4 = 192.7456 ms, billed 193
    assert ours_cold.endswith("\tMax Memory Used: 171 MB\tInit Duration: 180.40 ms")
    assert parse_report_line(ours_cold) == Billed(12.35, 1024, 193, 180.4, 171)
    assert "Billed Duration: 500 ms" in report_line(1.0, 128, "r-3", billed_duration_ms=500)
    assert parse_report_line('{"level":"INFO","message":"grove built"}') is None


def test_a_line_without_max_memory_used_still_parses_and_states_no_figure() -> None:
    from groveflow.cost import parse_report_line, report_line

    # GIVEN a line the local engine wrote before it measured memory, and one not measured
    old = "REPORT RequestId: r-4\tDuration: 5.00 ms\tBilled Duration: 5 ms\tMemory Size: 512 MB"
    unmeasured = report_line(5.0, 512, "r-5")
    # THEN both parse, with no peak, and ours never claims one it did not measure
    assert "Max Memory Used" not in unmeasured
    for line in (old, unmeasured):
        billed = parse_report_line(line)
        assert billed is not None and billed.max_memory_mb is None and billed.memory_mb == 512


# The REPORT line of an invocation Lambda killed over its memory ends with its status and
# error type (as quoted, e.g., in nasa-gcn/gcn.nasa.gov pull request 3628).
OOM_REPORT = (
    "REPORT RequestId: 0d5b8e2a-1c3f-4e5d-8a7b-9c0d1e2f3a4b\tDuration: 2890.12 ms\t"
    "Billed Duration: 2891 ms\tMemory Size: 512 MB\tMax Memory Used: 512 MB\t"
    "Status: error\tError Type: Runtime.OutOfMemory"
)


def test_an_out_of_memory_report_line_is_written_and_read_as_lambdas() -> None:
    from groveflow.cost import parse_report_line, report_line

    # GIVEN Lambda's line for an invocation killed over its memory, and ours
    ours = report_line(2890.12, 512, "r-6", max_memory_mb=530, error_type="Runtime.OutOfMemory")
    # THEN ours ends as Lambda's does, and both read back as out of memory with the peak
    assert ours.endswith(
        "\tMax Memory Used: 530 MB\tStatus: error\tError Type: Runtime.OutOfMemory"
    )
    theirs, mine = parse_report_line(OOM_REPORT), parse_report_line(ours)
    assert theirs is not None and (theirs.error_type, theirs.max_memory_mb) == (
        "Runtime.OutOfMemory",
        512,
    )
    assert mine is not None and (mine.error_type, mine.max_memory_mb) == (
        "Runtime.OutOfMemory",
        530,
    )
    # and a handler's own exception is a normal line (Lambda writes no status for it)
    assert "Status" not in report_line(1.0, 128, "r-7", error_type="ValueError")
    timed_out = parse_report_line(report_line(1.0, 128, "r-8", error_type="Sandbox.Timedout"))
    assert timed_out is not None and timed_out.error_type == "Sandbox.Timedout"


class _Logs:
    """A CloudWatch Logs client's filter_log_events over fixed groups."""

    class exceptions:  # as boto3 names it
        ResourceNotFoundException = KeyError

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups

    def filter_log_events(self, **kwargs: Any) -> dict[str, Any]:
        lines = self.groups[kwargs["logGroupName"]]
        return {"events": [{"message": line} for line in lines]}


def test_a_stacks_report_lines_give_each_functions_peak_against_its_memory() -> None:
    from groveflow.cost import function_of_log_group, invocations_from_logs

    # GIVEN a deployed stack's log groups, named as CloudFormation names them
    plan_group = "mystack-PlanFunctionLogGroup-1A2B3C4D5E6F"
    build_group = "mystack-BuildGroveFunctionLogGroup-9Z8Y7X6W5V4U"
    logs = _Logs(
        {
            plan_group: [COLD_REPORT, "START RequestId: x"],
            build_group: [
                OOM_REPORT,
                OOM_REPORT.replace("Max Memory Used: 512", "Max Memory Used: 97"),
            ],
        }
    )
    # WHEN a run's invocations are read from them and priced
    billed = invocations_from_logs(logs, [plan_group, build_group], 0, 1)
    cost = estimate_cost(billed, state_transitions=0)
    # THEN each function is named by its logical id, with its peak, memory and failures
    assert function_of_log_group("/aws/lambda/mystack-MergeFunction-AbC1") == "MergeFunction"
    assert cost.by_function["PlanFunction"]["max_memory_used_mb"] == 171
    assert cost.by_function["PlanFunction"]["memory_mb"] == 3008
    assert cost.by_function["BuildGroveFunction"] == {
        "invocations": 2,
        "memory_mb": 512,
        "max_memory_used_mb": 512,
        "out_of_memory": 2,
        "gb_seconds": pytest.approx(2 * 0.5 * 2.891),
    }


def test_cost_reads_billed_duration_which_includes_a_cold_starts_init() -> None:
    from groveflow.cost import parse_report_line

    # GIVEN the cold REPORT line above (102.25 ms run, 180.40 ms INIT, 283 ms billed, 3008 MB)
    billed = parse_report_line(COLD_REPORT)
    assert billed is not None
    # WHEN priced
    cost = estimate_cost([billed], state_transitions=0)
    # THEN by hand: 3008 / 1024 GB x 0.283 s = 2.9375 x 0.283 = 0.8313125 GB-s (not 0.30)
    assert cost.gb_seconds == pytest.approx(3008 / 1024 * 0.283, rel=1e-15)
    assert cost.gb_seconds == pytest.approx(0.8313125, rel=1e-12)


@dataclass(frozen=True)
class _ColdCall:
    duration_ms: float
    memory_mb: int
    init_ms: float | None


def test_an_invocation_without_a_report_line_is_billed_its_init_too() -> None:
    from groveflow.cost import billed_ms

    # GIVEN a cold and a warm invocation as the local engine records them
    cold, warm = _ColdCall(100.2, 1024, 250.5), _ColdCall(100.2, 1024, None)
    # THEN the cold one is billed ceil(100.2 + 250.5) = 351 ms, the warm one 101 ms
    assert (billed_ms(cold), billed_ms(warm)) == (351, 101)
    assert estimate_cost([cold, warm], 0).gb_seconds == pytest.approx(0.452, rel=1e-15)


def _report_lines(engine: Any, function: str) -> list[str]:
    group = f"/aws/lambda/{engine.stack.functions[function].function_name}"
    events = engine.logs.filter_log_events(logGroupName=group)["events"]
    return [e["message"] for e in events if e["message"].startswith("REPORT")]


def test_the_local_engines_report_lines_carry_a_cold_workers_init(state_dir: Any) -> None:
    from conftest import ROOT
    from groveflow.cost import parse_report_line
    from groveflow.local import LocalEngine

    # GIVEN a fresh engine of one worker WHEN it runs a small training run
    with LocalEngine(ROOT, workers=1, state_dir=state_dir) as fresh:
        run_id = unique_name("cold")
        request = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2}
        result = fresh.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        lines = {f: _report_lines(fresh, f) for f in ("PlanFunction", "BuildGroveFunction")}
    # THEN each function's first REPORT line is cold (Init Duration, billed with it), the
    # next grove's warm
    plan = parse_report_line(lines["PlanFunction"][0])
    first, second = (parse_report_line(line) for line in lines["BuildGroveFunction"][:2])
    assert plan is not None and plan.init_ms is not None
    assert first is not None and first.init_ms is not None
    assert first.billed_duration_ms == math.ceil(first.duration_ms + first.init_ms)
    assert second is not None and second.init_ms is None

"""Every charge of a run in its estimate and its cap (issue 28): each price named and dated,
arm64 and x86_64 priced apart, ephemeral storage above 512 MB, S3 requests, logs, Ingest and
ValidateRequest, the predict section, billed INIT; a grove size chosen when the request
leaves it out; ``max_cost_usd`` checked against all of it."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from typing import Any

import pytest

from conftest import unique_name
from groveflow import cost, estimates, training
from groveflow.errors import BudgetExceeded
from groveflow.request import parse_train_request
from groveflow.training import read_and_check

CATEGORIES = {
    "init",
    "ingest",
    "plan",
    "fitting",
    "merge",
    "predict",
    "lambda_requests",
    "ephemeral_storage",
    "transitions",
    "s3_requests",
    "logs",
}


def test_every_price_is_named_dated_and_sourced() -> None:
    assert set(cost.PRICES) == {
        "lambda_x86_64",
        "lambda_arm64",
        "lambda_request",
        "lambda_ephemeral_storage",
        "step_functions_transition",
        "s3_write_request",
        "s3_read_request",
        "logs_ingestion",
    }
    for name, price in cost.PRICES.items():
        assert price.usd > 0, name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.as_of), name
        assert price.source.startswith("https://aws.amazon.com/"), name
    assert cost.PRICES["lambda_arm64"].usd < cost.PRICES["lambda_x86_64"].usd


def _invocation(function: str, ms: float, memory_mb: int, **more: Any) -> cost.Billed:
    return cost.Billed(
        duration_ms=ms, memory_mb=memory_mb, billed_duration_ms=int(ms), function=function, **more
    )


def test_each_charge_is_counted_by_category() -> None:
    # GIVEN a cold builder (1 s INIT, 1 s fit) at 1,024 MB, and an ingest with 10,240 MB of /tmp
    builder = replace(_invocation("BuildGroveFunction", 2000, 1024), init_ms=1000.0)
    ingest = _invocation("IngestFunction", 1000, 1024, ephemeral_mb=10240)
    # WHEN priced on arm64 with S3 requests and logs
    priced = cost.estimate_cost(
        [builder, ingest],
        10,
        architecture="arm64",
        s3_read_requests=1000,
        s3_write_requests=1000,
        log_bytes=2**30,
    )
    arm = cost.PRICES["lambda_arm64"].usd
    # THEN each category is its own price times its own quantity, and they add up
    expected = {
        "init": 1.0 * arm,
        "fitting": 1.0 * arm,
        "ingest": 1.0 * arm,
        "lambda_requests": 2 * cost.PRICES["lambda_request"].usd,
        "ephemeral_storage": (10240 - 512) / 1024 * 1.0 * 0.0000000309,
        "transitions": 10 * 0.025 / 1000,
        "s3_requests": 1000 * 0.0004 / 1000 + 1000 * 0.005 / 1000,
        "logs": 0.50,
    }
    assert priced.charges == pytest.approx(expected)
    assert priced.total_usd == pytest.approx(sum(expected.values()))
    # AND x86_64 prices the same durations higher, the rest alike
    x86 = cost.estimate_cost([builder, ingest], 10, architecture="x86_64")
    assert x86.lambda_compute_usd / (3 * cost.PRICES["lambda_x86_64"].usd) == pytest.approx(1.0)


def test_an_unknown_architecture_is_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match=r"architecture='sparc' is not one of \['arm64', 'x86_64'\]"
    ):
        cost.estimate_cost([], 0, architecture="sparc")


def _estimate(body: dict[str, Any], *, left_out: bool = False, memory_mb: int = 1769) -> Any:
    request = parse_train_request(body)
    return read_and_check(
        request,
        request.data,
        ingested=False,
        builder_memory_mb=memory_mb,
        builder_reserved_concurrency=None,
        started=time.perf_counter(),
        grove_size_left_out=left_out,
    ).estimate


DIGITS_5000 = {
    "data": {"uri": "sklearn:digits"},
    "n_trees": 5000,
    "seed": 0,
    "max_concurrency": 500,
}


def test_a_left_out_grove_size_is_chosen_to_cut_cold_starts_within_the_wall_margin() -> None:
    # GIVEN the 5,000-tree digits run as the old defaults priced it (groves of 10, 3,008 MB
    # builders, x86_64) and as the plan estimates it with grove_size left out
    old = estimates.priced(
        replace(_estimate({**DIGITS_5000, "grove_size": 10}, memory_mb=3008), architecture="x86_64")
    )
    chosen = _estimate(DIGITS_5000, left_out=True)
    # THEN it costs at most a third of the old, its wall within the margin of the fastest size
    assert chosen.cost_usd <= old.cost_usd / 3, (chosen.cost.charges, old.cost.charges)
    assert chosen.trees_per_grove > 10 and chosen.groves == -(-5000 // chosen.trees_per_grove)
    assert chosen.grove_choice is not None
    stated = re.search(r"fastest grove size's ([\d.]+) s", chosen.grove_choice)
    assert stated is not None, chosen.grove_choice
    fastest = float(stated[1])
    assert chosen.aws_seconds <= fastest * (1 + estimates.GROVE_WALL_MARGIN) + 0.05
    assert f"grove_size {chosen.trees_per_grove} (left out, so chosen)" in chosen.grove_choice
    # AND INIT, the cost of small groves, is a smaller share than at the old defaults
    share = chosen.cost.charges["init"] / chosen.cost_usd
    assert share < old.cost.charges["init"] / old.cost_usd


def test_an_explicit_grove_size_is_kept() -> None:
    kept = _estimate({**DIGITS_5000, "grove_size": 10})
    assert (kept.trees_per_grove, kept.groves, kept.grove_choice) == (10, 500, None)


def test_the_estimate_counts_the_predict_section_s3_requests_and_logs() -> None:
    body = {
        "data": {"uri": "sklearn:digits"},
        "n_trees": 20,
        "grove_size": 10,
        "predict": {"data": {"uri": "sklearn:digits"}, "shard_rows": 500},
    }
    estimate = _estimate(body)
    assert set(estimate.cost.charges) == CATEGORIES - {"ingest"}
    for category in ("predict", "s3_requests", "logs", "init", "fitting", "merge"):
        assert estimate.cost.charges[category] > 0, category
    assert estimate.predict_shards == 4  # 1,797 rows in shards of 500
    assert estimate.cost.total_usd == pytest.approx(sum(estimate.cost.charges.values()))


def test_max_cost_between_the_old_and_the_new_estimate_refuses_the_run(s3_env: Any) -> None:
    # GIVEN a run with a predict section, and its estimate under the old model (x86_64 duration
    # of the training run alone, its requests and transitions) and the new one
    body = {
        "data": {"uri": "sklearn:digits"},
        "n_trees": 20,
        "grove_size": 10,
        "predict": {"data": {"uri": "sklearn:digits"}, "shard_rows": 500},
    }
    new = _estimate(body)
    train_only = estimates.priced(replace(new, predict_shards=0, architecture="x86_64")).cost
    old = sum(train_only.charges[c] for c in ("init", "plan", "fitting", "merge")) + (
        train_only.lambda_request_usd + train_only.step_functions_usd
    )
    assert old < new.cost_usd
    cap = (old + new.cost_usd) / 2
    # WHEN the plan runs with max_cost_usd between them
    with pytest.raises(BudgetExceeded, match=r"above max_cost_usd="):
        training.plan_run(
            {"request": {**body, "max_cost_usd": cap, "run_id": unique_name("capped")}},
            bucket=s3_env.bucket,
            builder_memory_mb=1769,
        )


def test_a_runs_s3_requests_as_built_are_counted_as_its_estimate_counts_them() -> None:
    # GIVEN estimates with a predict section, OOB sums, and ingested CSV data
    body = {
        "data": {"uri": "sklearn:digits"},
        "n_trees": 40,
        "grove_size": 10,
        "model": {"params": {"oob_score": True}},
        "predict": {"data": {"uri": "sklearn:digits"}, "shard_rows": 500},
    }
    plain = _estimate(body)
    for shape in (plain, estimates.priced(replace(plain, ingested=True, data_mb=20.0))):
        # WHEN a run bills exactly the invocations its estimate predicted
        _, invocations = estimates._on_aws(shape)
        counted = estimates.run_s3_requests(shape, invocations)
        # THEN its summary counts the estimate's S3 requests, no more, no fewer
        assert counted == (shape.cost.s3_read_requests, shape.cost.s3_write_requests)
    # AND a prediction of its own (no training plan among its invocations) counts its shards'
    shard = _invocation("ScoreShardFunction", 100, 1769)
    reads, writes = estimates.run_s3_requests(shape, [shard, shard])
    assert (reads, writes) == estimates._predict_s3_requests(2) and reads > 0


class _Stack:
    """A deployed stack's three services as execution_cost reads them: a plan and two
    builders (one cold) whose configuration says arm64 and whose logs hold their REPORT lines
    among other events."""

    REPORT = (
        "REPORT RequestId: r{n}\tDuration: 1000.00 ms\tBilled Duration: {billed} ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 100 MB\t{init}"
    )

    def __init__(self, architecture: str) -> None:
        self.architecture = architecture
        cold = self.REPORT.format(n=1, billed=3000, init="Init Duration: 2000.00 ms\t")
        warm = self.REPORT.format(n=2, billed=1000, init="")
        self.events = {
            "/aws/lambda/s-PlanFunction": ["START RequestId: r0", warm.replace("r2", "r0")],
            "/aws/lambda/s-BuildGroveFunction": ["a handler line", cold, warm],
        }

    # Step Functions
    def describe_state_machine(self, **_: Any) -> dict[str, Any]:
        definition = {
            "States": {
                "Plan": {"Parameters": {"FunctionName": "s-PlanFunction"}},
                "BuildGroves": {
                    "ItemProcessor": {
                        "States": {"B": {"Parameters": {"FunctionName": "s-BuildGroveFunction"}}}
                    }
                },
            }
        }
        return {"definition": json.dumps(definition)}

    def get_execution_history(self, **_: Any) -> dict[str, Any]:
        return {"events": [{"type": "TaskStateEntered"}, {"type": "MapStateEntered"}]}

    def list_map_runs(self, **_: Any) -> dict[str, Any]:
        return {"mapRuns": [{"mapRunArn": "m"}]}

    def describe_map_run(self, **_: Any) -> dict[str, Any]:
        return {"itemCounts": {"total": 2}}

    # Lambda
    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"Architectures": [self.architecture], "EphemeralStorage": {"Size": 512}}

    # CloudWatch Logs
    class exceptions:
        ResourceNotFoundException = KeyError

    def filter_log_events(self, **kwargs: Any) -> dict[str, Any]:
        assert "filterPattern" not in kwargs  # every event: the logs' bytes are billed
        return {"events": [{"message": m} for m in self.events[kwargs["logGroupName"]]]}


def test_a_stacks_summary_prices_its_architecture_and_counts_requests_and_logs() -> None:
    import datetime

    from groveflow.follow import execution_cost

    # GIVEN an ended execution of an arm64 stack and of an x86_64 one
    when = datetime.datetime(2026, 12, 8, tzinfo=datetime.UTC)
    description = {
        "stateMachineArn": "sm",
        "executionArn": "ex",
        "startDate": when,
        "stopDate": when,
        "output": "{}",
    }
    priced = {}
    for architecture in ("arm64", "x86_64"):
        stack = _Stack(architecture)
        # WHEN its cost is read from its REPORT lines and history
        priced[architecture] = execution_cost(stack, stack, stack, description)
    arm = priced["arm64"]
    # THEN the duration is priced at the stack's architecture, its INIT apart
    assert arm["architecture"] == "arm64"
    assert arm["charges"]["init"] == pytest.approx(2.0 * cost.PRICES["lambda_arm64"].usd)
    assert arm["charges"]["fitting"] == pytest.approx(2.0 * cost.PRICES["lambda_arm64"].usd)
    x86_share = priced["x86_64"]["lambda_compute_usd"] / arm["lambda_compute_usd"]
    assert x86_share == pytest.approx(
        cost.PRICES["lambda_x86_64"].usd / cost.PRICES["lambda_arm64"].usd
    )
    # AND every event's bytes (and 26 an event) are its logs
    logged = sum(len(m) + 26 for lines in _Stack("arm64").events.values() for m in lines)
    assert arm["log_bytes"] == logged
    assert arm["charges"]["logs"] == pytest.approx(logged / 2**30 * 0.50)
    # AND the summary has the estimate's categories (S3 requests counted: no stored estimate
    # read here, so only a predict section's, none)
    assert {"init", "fitting", "plan", "transitions", "s3_requests", "logs"} <= set(arm["charges"])


def test_the_run_summary_says_which_grove_size_the_plan_chose_and_why(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import groveflow
    from groveflow.console import emit, summary
    from groveflow.engines import Local

    # GIVEN a run that leaves grove_size out, on the local engine
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 40, "seed": 0}
    with Local(workers=2, state_dir=tmp_path / "state") as engine:
        result = groveflow.train({**request, "run_id": "chosen"}, engine=engine)
        assert result.succeeded, (result.error, result.cause)
        # WHEN it is resumed, still leaving grove_size out
        again = groveflow.train({**request, "run_id": "chosen"}, engine=engine)
    described = summary(result)
    fan_out = described["output"]["fan_out"]
    # THEN the summary names the chosen size and why, and the run was built at it
    size = fan_out["grove_size"]
    assert fan_out["grove_choice"].startswith(f"grove_size {size} (left out, so chosen)")
    assert described["groves_built"] == -(-40 // size)
    emit(result, as_json=False)
    assert f"groves    grove_size {size} (left out, so chosen)" in capsys.readouterr().out
    # AND the resumed run kept the size (every grove reused), as its first plan chose it
    assert summary(again)["groves_reused"] == described["groves_built"]
    assert summary(again)["output"]["fan_out"]["grove_choice"] == fan_out["grove_choice"]
    # AND its cost counts the estimate's categories
    assert {"s3_requests", "logs", "transitions"} <= set(described["cost"]["charges"])


def test_a_chosen_grove_size_keeps_each_grove_within_the_grove_time_guard() -> None:
    # GIVEN the 5,000-tree run's estimate, and the time a grove of 20 trees takes on AWS
    shape = _estimate({**DIGITS_5000, "grove_size": 10})
    free = estimates.choose_grove_size(shape, max_concurrency=500, fits=lambda _: True)
    at_20 = estimates.priced(replace(shape, trees_per_grove=20, grove_mb=shape.grove_mb * 2))
    assert free.trees_per_grove > 20  # unbounded, larger groves are chosen
    # WHEN the longest a grove may take is that
    bounded = estimates.choose_grove_size(
        shape, max_concurrency=500, fits=lambda _: True, max_grove_seconds=at_20.aws_grove_seconds
    )
    # THEN no larger grove is chosen
    assert bounded.trees_per_grove <= 20
    assert bounded.aws_grove_seconds <= at_20.aws_grove_seconds

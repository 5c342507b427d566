"""The plan's estimate of a run's wall time and cost, the budget cap, and ``groveflow estimate``.

How close the local-wall estimate comes to the measured wall is a benchmark's claim
(benchmarks/estimate.py); here only a loose band, so the estimate cannot silently break.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import unique_name
from groveflow import estimates
from groveflow.errors import BudgetExceeded, InvalidRequest
from groveflow.estimates import RunEstimate, check_budget
from groveflow.request import parse_train_request

DIGITS = {"data": {"uri": "sklearn:digits"}, "n_trees": 40, "grove_size": 10, "seed": 3}


def _builds(result: Any) -> list[Any]:
    return [i for i in result.invocations if i.function == "BuildGroveFunction"]


def _record(engine: Any, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((engine.run_dir(run_id) / "run.json").read_text())
    return record


def test_a_cap_below_the_estimate_fails_at_plan_and_builds_no_grove(engine: Any) -> None:
    # GIVEN a request capped far below what 4 groves cost
    run_id = unique_name("budget-low")
    request = {**DIGITS, "run_id": run_id, "max_cost_usd": 0.000001}
    # WHEN it runs
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the plan refuses it by name, with the estimate and the cap, before any grove
    assert result.status == "FAILED"
    assert result.error == "BudgetExceeded"
    assert re.search(r"estimated to cost \$0\.\d{6}", result.cause)
    assert "max_cost_usd=1e-06" in result.cause
    assert _builds(result) == []
    assert not (engine.run_dir(run_id) / "run.json").exists()


def test_a_cap_above_the_estimate_runs_and_the_estimate_prices_the_run(engine: Any) -> None:
    from groveflow.engines import _local_cost

    # GIVEN the same request with a generous cap
    run_id = unique_name("budget-high")
    result = engine.run(
        "TrainStateMachine", {**DIGITS, "run_id": run_id, "max_cost_usd": 5}, name=run_id
    )
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(_builds(result)) == 4
    # THEN the run record keeps the plan's estimate, whose requests and transitions are the
    # run's own (how close its local wall comes to the measured one is benchmarks/'s claim:
    # a ratio of times fails whenever the machine is busy)
    estimate = RunEstimate.from_dict(_record(engine, run_id)["estimate"])
    actual = _local_cost(result, engine.history(result.execution_arn), engine.s3)
    assert estimate.cost.lambda_requests == actual["lambda_requests"] == 6
    assert estimate.cost.state_transitions == actual["state_transitions"]
    # AND the summary's cost counts the estimate's categories, at the stack's architecture
    assert set(actual["charges"]) == set(estimate.cost.charges)
    assert actual["architecture"] == estimate.architecture == "arm64"
    for counted in ("s3_requests", "logs", "transitions"):
        assert actual["charges"][counted] > 0, counted
    # INIT is billed for the cold starts only (an engine warmed by an earlier run has none)
    cold = [i for i in result.invocations if i.init_ms]
    assert (actual["charges"]["init"] > 0) == bool(cold), [i.init_ms for i in cold]
    assert estimate.groves == 4 and estimate.trees_per_grove == 10
    assert estimate.local_wall(2).total_seconds > 0
    assert result.output["trees_built"] == 40


def test_max_cost_usd_is_validated_and_does_not_change_the_run() -> None:
    for bad in (0, -1, "0.5", True, math.nan, math.inf):
        with pytest.raises(InvalidRequest, match="max_cost_usd must be a positive number"):
            parse_train_request({**DIGITS, "max_cost_usd": bad})
    capped = parse_train_request({**DIGITS, "max_cost_usd": 0.5})
    assert capped.max_cost_usd == 0.5
    assert parse_train_request(capped.to_dict()) == capped
    assert "max_cost_usd" not in parse_train_request(DIGITS).to_dict()


def test_the_budget_error_names_the_estimate_and_the_cap() -> None:
    estimate = _estimate({**DIGITS, "n_trees": 20})
    over = parse_train_request({**DIGITS, "max_cost_usd": estimate.cost_usd / 2})
    with pytest.raises(BudgetExceeded) as raised:
        check_budget(over, estimate)
    assert f"${estimate.cost_usd:.6f}" in str(raised.value)
    assert f"max_cost_usd={estimate.cost_usd / 2:g}" in str(raised.value)
    check_budget(parse_train_request({**DIGITS, "max_cost_usd": 2 * estimate.cost_usd}), estimate)


def test_the_aws_model_scales_with_groves_concurrency_and_memory() -> None:
    # GIVEN one measured trial, the AWS model applied to other shapes
    small = _estimate({**DIGITS, "n_trees": 100, "max_concurrency": 10})
    # THEN half the memory below 1,769 MB makes each grove slower by Lambda's vCPU share
    assert estimates.vcpu_factor(3008) == 1.0
    assert estimates.vcpu_factor(884) == pytest.approx(1769 / 884)
    # and 2,500 builders at once wait 20 s for Lambda's scaling (1,000 per 10 s)
    wide = _estimate({**DIGITS, "n_trees": 2500, "grove_size": 1, "max_concurrency": 2500})
    assert wide.aws.ramp_seconds == 20.0
    assert small.aws.ramp_seconds == 0.0
    # and every grove child costs two transitions, every invocation a request
    assert wide.cost.state_transitions - small.cost.state_transitions == 2 * (2500 - 10)
    assert wide.cost.lambda_requests == 2500 + 2


def test_every_constant_is_named_in_the_docstring_with_its_source() -> None:
    doc = estimates.__doc__ or ""
    constants = [
        name
        for name, value in vars(estimates).items()
        if name.isupper()
        and not name.endswith("_VERSION")
        and isinstance(value, int | float | str | tuple)
    ]
    assert len(constants) >= 15
    for name in constants:
        assert f":data:`{name}`" in doc, f"{name} has no source in groveflow.estimates' docstring"
    for fact in ("1,769 MB", "1,000 execution environment", "85-90 MB/s", "5,500"):
        assert fact in doc
    assert doc.count("https://") >= 5


def test_groveflow_estimate_prints_and_exits_0_without_creating_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from groveflow.cli import main

    # GIVEN an input file in an empty directory
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(DIGITS))
    # WHEN it is estimated, as text and as JSON
    assert main(["estimate", str(path), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert main(["estimate", str(path), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    # THEN it prints the AWS wall, the cost and the local wall, and no run was started
    assert re.search(r"^AWS\s+[\d.]+ s: plan", text, re.M)
    assert re.search(r"^cost\s+\$0\.\d{6} on AWS", text, re.M)
    assert re.search(r"^local\s+[\d.]+ s on 2 workers", text, re.M)
    assert described["groves"] == 4 and described["cost"]["lambda_requests"] == 6
    assert described["aws"]["total_seconds"] > 0
    assert list(tmp_path.iterdir()) == [path]


def _estimate(request: dict[str, Any]) -> RunEstimate:
    import groveflow

    return groveflow.estimate(request, workers=2)


def test_a_csv_is_estimated_through_ingest_with_its_two_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from groveflow.cli import main

    # GIVEN the same rows as CSV and as .npz
    rows = np.random.default_rng(0).integers(0, 9, size=(40, 3))
    rows[:, 2] = rows[:, 0] > 4
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,y\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    npz = tmp_path / "rows.npz"
    np.savez(npz, X=rows[:, :2].astype(np.float32), y=rows[:, 2])
    inputs = {}
    for name, data in (("csv", {"uri": str(csv), "target": "y"}), ("npz", {"uri": str(npz)})):
        inputs[name] = tmp_path / f"{name}.json"
        inputs[name].write_text(json.dumps({"data": data, "n_trees": 6, "grove_size": 3}))
    # WHEN each is estimated as JSON
    described = {}
    for name, path in inputs.items():
        assert main(["estimate", str(path), "--json"]) == 0
        described[name] = json.loads(capsys.readouterr().out)  # nothing but the JSON
    # THEN the CSV run goes through ValidateRequest and Ingest: one transition more
    assert described["csv"]["ingested"] and not described["npz"]["ingested"]
    transitions = {name: d["cost"]["state_transitions"] for name, d in described.items()}
    assert transitions["csv"] == transitions["npz"] + 1


def test_an_auto_forest_is_estimated_at_its_worst_case_of_every_round() -> None:
    # GIVEN n_trees "auto" from 20 trees in rounds of 20 up to 100 (5 rounds)
    auto = {
        "data": {"uri": "sklearn:wine"},
        "model": {"params": {"oob_score": True}},
        "n_trees": "auto",
        "max_trees": 100,
        "round_trees": 20,
        "grove_size": 10,
    }
    first = {"data": auto["data"], "model": auto["model"], "n_trees": 100, "grove_size": 10}
    worst, once = _estimate(auto), _estimate(first)
    # THEN it is priced as 100 trees, with 4 more rounds of grow plan, Map and merge
    assert worst.rounds == 5 and worst.n_trees == 100 and worst.groves == 10
    assert worst.cost.state_transitions == once.cost.state_transitions + 4 * 4
    assert worst.cost.lambda_requests == once.cost.lambda_requests + 2 * 4
    assert worst.aws.merge_seconds > 3 * once.aws.merge_seconds  # a merge per round


def test_estimate_chooses_the_grove_size_the_plan_would_when_it_is_left_out() -> None:
    from groveflow.api import estimate

    # GIVEN an input that leaves grove_size out, and the same with grove_size 10
    body = {"data": {"uri": "sklearn:digits"}, "n_trees": 400, "seed": 0}
    # WHEN each is estimated
    chosen = estimate(body, workers=2)
    kept = estimate({**body, "grove_size": 10}, workers=2)
    # THEN the first is at the size the plan chooses, saying so; the second as given
    assert chosen.grove_choice is not None
    assert chosen.grove_choice.startswith(f"grove_size {chosen.trees_per_grove} (left out")
    assert (kept.trees_per_grove, kept.grove_choice) == (10, None)


def test_an_estimate_stored_before_architectures_were_priced_reads_as_x86_64() -> None:
    # GIVEN a fresh estimate (arm64) and the same one as a record from before stored it
    fresh = _estimate({**DIGITS, "n_trees": 20}).to_dict()
    old = {k: v for k, v in fresh.items() if k != "architecture"}
    old["cost"] = {k: v for k, v in fresh["cost"].items() if k != "architecture"}
    # WHEN each is read back
    # THEN the fresh one keeps its architecture, and the old one is its cost's (x86_64 then)
    assert RunEstimate.from_dict(fresh).architecture == "arm64"
    assert RunEstimate.from_dict(old).architecture == "x86_64"
    assert RunEstimate.from_dict(old).cost.architecture == "x86_64"

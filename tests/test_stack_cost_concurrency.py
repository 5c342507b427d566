"""Where AWS stops a run (issue 28): the plan clamps ``max_concurrency`` to what the account
leaves (``lambda:GetAccountSettings``, less a headroom for the other functions) or to the
builders' reserved concurrency, and the run's summary says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber

import groveflow
from conftest import unique_name
from groveflow import training
from groveflow.console import summary
from groveflow.engines import Local
from groveflow.training._concurrency import ConcurrencyLimit, concurrency_limit, fan_out_report


def _lambda_reporting(unreserved: int) -> Any:
    """A Lambda client whose GetAccountSettings answers ``unreserved`` (botocore's Stubber:
    the response is checked against the Lambda API's own model)."""
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_response(
        "get_account_settings",
        {
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800,
                "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": 52_428_800,
                "ConcurrentExecutions": 1_000,
                "UnreservedConcurrentExecutions": unreserved,
            },
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 10},
        },
        {},
    )
    stubber.activate()
    return client


def test_the_account_settings_are_read_from_the_lambda_api() -> None:
    assert training.unreserved_concurrency(_lambda_reporting(300)) == 300


def test_an_account_that_cannot_be_read_leaves_the_run_as_requested() -> None:
    # GIVEN a Lambda API that refuses the call (no lambda:GetAccountSettings permission)
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_client_error("get_account_settings", "AccessDeniedException", http_status_code=403)
    stubber.activate()
    # THEN nothing is known, and nothing is clamped by it
    assert training.unreserved_concurrency(client) is None
    limit = concurrency_limit(None, lambda: training.unreserved_concurrency(client))
    assert limit == ConcurrencyLimit(None, None)
    assert fan_out_report(1_000, 5_000, limit) == {
        "requested": 1_000,
        "max_concurrency": 1_000,
        "why": None,
    }


def test_reserved_builders_clamp_without_asking_the_account() -> None:
    def never() -> int:
        raise AssertionError("the account's concurrency does not bound reserved builders")

    limit = concurrency_limit(200, never)
    report = fan_out_report(1_000, 5_000, limit)
    assert report["max_concurrency"] == 200
    assert report["why"] == (
        "max_concurrency 1,000 clamped to 200: the stack reserves 200 builders "
        "(BuilderReservedConcurrency): more would only be throttled"
    )


def test_a_request_for_1000_is_clamped_to_what_an_account_of_300_leaves(s3_env: Any) -> None:
    # GIVEN an account whose unreserved concurrency the Lambda API reports as 300, and a
    # request for 1,000 builders at once over 1,000 groves
    lambda_client = _lambda_reporting(300)
    request = {
        "data": {"uri": "sklearn:iris"},
        "n_trees": 1_000,
        "grove_size": 1,
        "max_concurrency": 1_000,
        "run_id": unique_name("clamped"),
    }
    # WHEN the plan runs
    planned = training.plan_run(
        {"request": request},
        bucket=s3_env.bucket,
        builder_memory_mb=1769,
        account_concurrency=lambda: training.unreserved_concurrency(lambda_client),
    )
    # THEN the Map runs 270 builders at once (300 less a headroom of 30 for the rest)
    assert (planned["n_groves"], planned["max_concurrency"]) == (1_000, 270)
    # AND the plan's output says why, for the run summary
    assert planned["fan_out"] == {
        "requested": 1_000,
        "max_concurrency": 270,
        "why": "max_concurrency 1,000 clamped to 270: the account leaves 300 concurrent "
        "executions unreserved (lambda:GetAccountSettings), less 30 for the Plan, Merge and "
        "other functions it runs; more would throttle them",
    }


def test_the_run_summary_carries_the_plans_account_of_its_concurrency(tmp_path: Path) -> None:
    # GIVEN a run asking for 40 builders at once (the default) over 2 groves, on the local engine
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2, "seed": 0}
    with Local(workers=2, state_dir=tmp_path / "state") as engine:
        result = groveflow.train(request, engine=engine)
    assert result.succeeded, (result.error, result.cause)
    # THEN the summary (groveflow train --json) says the fan-out was clamped, and why
    assert summary(result)["output"]["fan_out"] == {
        "requested": 40,
        "max_concurrency": 2,
        "why": "max_concurrency 40 clamped to 2: only 2 groves to build",
    }

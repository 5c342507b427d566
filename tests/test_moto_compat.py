"""Pins moto's departures from AWS Step Functions and groveflow's corrections of them.

Tests named ``test_moto_still_*`` run uncorrected moto in a subprocess: when one fails,
moto has changed upstream, and the matching correction in
:mod:`groveflow.local.moto_compat` should be revisited. The other tests run in this
process on a server of their own, after :func:`apply_corrections`.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from groveflow.local import moto_compat

ROLE = "arn:aws:iam::123456789012:role/groveflow-test"
REGION = "us-east-1"
THRESHOLD_ERROR = "States.ExceedToleratedFailureThreshold"
THRESHOLD_FAILURE = {"Error": THRESHOLD_ERROR, "Cause": "1 of 4 items failed"}
HANDLERS: dict[str, Callable[[Any], Any]] = {}
_ids = count()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:123456789012:function:{name}"


def _answer_invoke(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """Answer the interpreter's lambda:Invoke from HANDLERS, as Lambda would."""
    arn = urllib.parse.unquote(params["url_path"]).split("/functions/")[1].split("/")[0]
    response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    try:
        result = HANDLERS[arn.rsplit(":", 1)[-1]](json.loads(params["body"] or b"{}"))
    except ClientError:
        raise
    except Exception as error:
        result = {"errorType": type(error).__name__, "errorMessage": str(error)}
        response["FunctionError"] = "Unhandled"
    payload = json.dumps(result).encode()
    response["Payload"] = StreamingBody(io.BytesIO(payload), len(payload))
    return AWSResponse("http://lambda.local", 200, HTTPHeaders(), None), response


def count_lambda_clients() -> list[str]:
    """A list that grows by one for each Lambda client built from the default session."""
    created: list[str] = []
    assert boto3.DEFAULT_SESSION is not None
    register = boto3.DEFAULT_SESSION.events.register
    register("creating-client-class.lambda", lambda **_: created.append("lambda"))
    return created


def grove(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("fail"):
        raise ValueError(f"grove {event['i']} failed")
    return {"grove": event["i"]}


class LocalSfn:
    """A moto server with Step Functions execution on, and clients for it."""

    def __init__(self, endpoint: str) -> None:
        self.sfn = boto3.client("stepfunctions", endpoint_url=endpoint)
        self.s3 = boto3.client("s3", endpoint_url=endpoint)

    def create(self, definition: dict[str, Any]) -> str:
        name = f"compat-{os.getpid()}-{next(_ids)}"
        body = json.dumps(definition)
        return self.sfn.create_state_machine(name=name, definition=body, roleArn=ROLE)[
            "stateMachineArn"
        ]

    def start(self, definition: dict[str, Any], execution_input: Any = None) -> str:
        return self.sfn.start_execution(
            stateMachineArn=self.create(definition),
            name=f"run-{next(_ids)}",
            input=json.dumps(execution_input or {}),
        )["executionArn"]

    def wait(self, execution_arn: str, timeout_seconds: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            described = dict(self.sfn.describe_execution(executionArn=execution_arn))
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described
            time.sleep(0.02)

    def run(self, definition: dict[str, Any], execution_input: Any = None) -> dict[str, Any]:
        return self.wait(self.start(definition, execution_input))

    def history(self, execution_arn: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)
        return [event["type"] for event in events["events"]]

    def map_run(self, execution_arn: str) -> dict[str, Any]:
        (listed,) = self.sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
        return dict(self.sfn.describe_map_run(mapRunArn=listed["mapRunArn"]))


@contextmanager
def local_sfn() -> Iterator[LocalSfn]:
    """Start a server on a free port; restore MOTO_PORT and the default session after."""
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    saved_port, saved_session = os.environ.get("MOTO_PORT"), boto3.DEFAULT_SESSION
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ["MOTO_PORT"] = str(port)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    boto3.setup_default_session(region_name=REGION)
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.lambda.Invoke", _answer_invoke)  # type: ignore[arg-type]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield LocalSfn(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        boto3.DEFAULT_SESSION = saved_session
        if saved_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved_port


def distributed_map(
    child: dict[str, Any], mode: str = "DISTRIBUTED", **fields: Any
) -> dict[str, Any]:
    """A one-state machine mapping ``$.items`` through ``child`` (a single end state)."""
    processor = {
        "ProcessorConfig": {"Mode": mode, "ExecutionType": "STANDARD"},
        "StartAt": "Child",
        "States": {"Child": {**child, "End": True}},
    }
    if "ItemReader" not in fields:
        fields.setdefault("ItemsPath", "$.items")
    state = {"Type": "Map", "ItemProcessor": processor, **fields}
    if "Next" not in fields:
        state["End"] = True
    return {"StartAt": "Map", "States": {"Map": state}}


def invoke(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn(name), "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **fields,
    }


def items(n: int, failing: int = 0) -> dict[str, Any]:
    return {"items": [{"i": i, "fail": i < failing} for i in range(n)]}


def padded(event: dict[str, Any]) -> dict[str, Any]:
    """A child result of about 1 KB."""
    return {"i": event["i"], "pad": "x" * 1000}


def huge(_: Any) -> dict[str, Any]:
    """A Lambda result over the 256 KiB payload quota."""
    return {"pad": "x" * 300_000}


PADDED_ITEMS = 300  # x 1 KB: a Map result over 256 KiB


def caught_huge_result() -> dict[str, Any]:
    """A Task whose result passes the quota, with a Catch of States.ALL."""
    catch = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}
    task = invoke("huge", Catch=[catch], Next="Caught")
    return {"StartAt": "T", "States": {"T": task, "Caught": {"Type": "Pass", "End": True}}}


def result_writer(bucket: str) -> dict[str, Any]:
    return {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": bucket, "Prefix.$": "States.Format('runs/{}/results', $.run)"},
    }


# Uncorrected moto, in a subprocess ----------------------------------------------------


def _uncorrected_report() -> dict[str, Any]:
    """Observe uncorrected moto; run by ``python -c`` in a fresh interpreter."""
    from moto import mock_aws

    HANDLERS["grove"] = grove
    HANDLERS["padded"] = padded
    HANDLERS["huge"] = huge
    dead_workers: list[str] = []
    threading.excepthook = lambda hook_args: dead_workers.append(hook_args.exc_type.__name__)
    report: dict[str, Any] = {}
    with local_sfn() as local:
        failed = local.run(distributed_map(invoke("grove")), items(4, failing=1))
        report["failed_item"] = [failed["status"], json.loads(failed["output"])]
        try:
            local.create(distributed_map(invoke("grove"), ToleratedFailurePercentage=50))
        except ClientError as error:
            report["integer_percentage"] = str(error)
        clients = count_lambda_clients()
        local.run(distributed_map(invoke("grove"), MaxConcurrency=1), items(10))
        report["lambda_clients_for_10_invokes"] = len(clients)
        long_map = local.start(distributed_map({"Type": "Pass"}, MaxConcurrency=1), items(1200))
        deadline = time.monotonic() + 30
        while not dead_workers and time.monotonic() < deadline:
            local.wait(long_map, 0.2)
        report["long_map"] = [local.wait(long_map, 0)["status"], dead_workers]
        reraise = {"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"}
        reraised = local.run({"StartAt": "F", "States": {"F": reraise}}, THRESHOLD_FAILURE)
        report["reraised_states_error"] = reraised["error"]
        report["map_runs_while_starting"] = _map_runs_while_starting(local)
        report["total_while_running"] = _total_while_running(local)
        report.update(_names_results_and_quotas(local))
        report["map_run_after_stop"] = _map_run_after_stop(local)
        report["operations_moto_lacks"] = _operations_moto_lacks(local)
        report["history_pages"] = _history_pages(local)
        report["input_over_quota"] = _start_over_quota(local)
        session = boto3.DEFAULT_SESSION
        with mock_aws():
            report["mock_aws_keeps_session"] = boto3.DEFAULT_SESSION is session
    return report


def _names_results_and_quotas(local: LocalSfn) -> dict[str, Any]:
    """Unnamed and badly named starts, ResultWriter, and the payload quota, uncorrected."""
    report: dict[str, Any] = {}
    unnamed = local.create({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    first = local.sfn.start_execution(stateMachineArn=unnamed)["executionArn"]
    try:
        second = local.sfn.start_execution(stateMachineArn=unnamed)["executionArn"]
        # moto hands back the first execution while it still runs (same name and input)
        outcome = "the same execution" if second == first else "started"
        report["unnamed_starts"] = [first.rsplit(":", 1)[1], outcome]
    except ClientError as error:
        report["unnamed_starts"] = [first.rsplit(":", 1)[1], error.response["Error"]["Code"]]
    named = local.sfn.start_execution(stateMachineArn=unnamed, name="my run/1")
    report["bad_name_started"] = named["executionArn"].endswith(":my run/1")
    bucket = f"compat-results-{next(_ids)}"
    local.s3.create_bucket(Bucket=bucket)
    from_input = local.run(
        distributed_map(invoke("grove"), ResultWriter=result_writer(bucket)),
        {**items(2), "run": "r1"},
    )
    report["writer_parameters_read"] = from_input["cause"].rsplit("in the input ", 1)[1]
    static = {**result_writer(bucket), "Parameters": {"Bucket": bucket, "Prefix": "out"}}
    written = local.run(distributed_map(invoke("grove"), ResultWriter=static), items(2))
    key = json.loads(written["output"])["ResultWriterDetails"]["Key"]
    manifest = json.loads(local.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    report["result_files"] = manifest["ResultFiles"]
    big = local.run(
        distributed_map(invoke("padded"), MaxConcurrency=10, ResultPath=None),
        items(PADDED_ITEMS),
    )
    report["map_result_over_quota"] = big["status"]
    report["caught_data_limit"] = local.run(caught_huge_result())["status"]
    return report


@contextmanager
def slow_starting_executions(seconds: float = 0.5) -> Iterator[None]:
    """Widen the window between StartExecution and the interpreter's environment."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker._execution_logic

    def delayed(self: Any) -> None:
        time.sleep(seconds)
        original(self)

    ExecutionWorker._execution_logic = delayed  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExecutionWorker._execution_logic = original  # type: ignore[method-assign]


def _total_while_running(local: LocalSfn) -> int:
    """A 5-item Map Run's itemCounts.total while 2 children (MaxConcurrency 2) are held."""
    release = threading.Event()
    HANDLERS["held"] = lambda event: release.wait(10) and grove(event)
    execution_arn = local.start(distributed_map(invoke("held"), MaxConcurrency=2), items(5))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if local.sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]:
            counts = local.map_run(execution_arn)["itemCounts"]
            if counts["running"] == 2:
                break
        time.sleep(0.02)
    total = int(local.map_run(execution_arn)["itemCounts"]["total"])
    release.set()
    local.wait(execution_arn)
    return total


def test_moto_still_counts_an_item_into_the_total_only_when_it_starts(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["total_while_running"] == 2


def test_a_map_runs_total_is_every_item_from_the_start(local: LocalSfn) -> None:
    assert _total_while_running(local) == 5


def _map_runs_while_starting(local: LocalSfn) -> dict[str, Any]:
    """ListMapRuns and DescribeMapRun while one execution is still starting."""
    done = local.run(distributed_map(invoke("grove")), items(2))
    (earlier,) = local.sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"]
    once = Config(retries={"max_attempts": 1, "mode": "standard"})
    sfn = boto3.client("stepfunctions", endpoint_url=local.sfn.meta.endpoint_url, config=once)
    seen: dict[str, Any] = {}
    with slow_starting_executions():
        starting = local.start(distributed_map(invoke("grove")), items(2))
        for name, call in (
            ("list", lambda: sfn.list_map_runs(executionArn=starting)["mapRuns"]),
            ("describe", lambda: sfn.describe_map_run(mapRunArn=earlier["mapRunArn"])["status"]),
            ("missing", lambda: sfn.describe_map_run(mapRunArn=earlier["mapRunArn"] + "x")),
        ):
            try:
                seen[name] = call()
            except ClientError as error:
                seen[name] = error.response["ResponseMetadata"]["HTTPStatusCode"]
    local.wait(starting)
    return seen


def _map_run_after_stop(local: LocalSfn) -> dict[str, Any]:
    """A 4-item Map Run (MaxConcurrency 1) after StopExecution while its first child runs."""
    release = threading.Event()
    HANDLERS["held"] = lambda event: release.wait(10) and grove(event)
    execution_arn = local.start(distributed_map(invoke("held"), MaxConcurrency=1), items(4))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = local.sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
        if started and local.map_run(execution_arn)["itemCounts"]["running"] == 1:
            break
        time.sleep(0.02)
    local.sfn.stop_execution(executionArn=execution_arn, error="Stopped", cause="by the test")
    release.set()
    execution = local.wait(execution_arn)
    while local.map_run(execution_arn)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.02)
    described = local.map_run(execution_arn)
    counts = {k: v for k, v in described["itemCounts"].items() if k != "resultsWritten"}
    return {
        "execution": execution["status"],
        "map_run": described["status"],
        "items": counts,
        "running_executions": described["executionCounts"]["running"],
    }


def _refusal(call: Callable[[], Any]) -> Any:
    """The call's answer, or its error: (HTTP status, code, whether the body is JSON)."""
    try:
        return call()
    except ClientError as error:
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        code = error.response["Error"]["Code"]
        return [status, code, not error.response["Error"].get("Message", "").startswith("<")]


def _operations_moto_lacks(local: LocalSfn) -> dict[str, Any]:
    """StartSyncExecution, RedriveExecution, ValidateStateMachineDefinition,
    ListStateMachineVersions and TestState, as the endpoint answers them."""
    once = Config(retries={"max_attempts": 1, "mode": "standard"}, inject_host_prefix=False)
    sfn = boto3.client("stepfunctions", endpoint_url=local.sfn.meta.endpoint_url, config=once)
    passing = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    machine = local.create(passing)
    ended = local.run(passing)["executionArn"]
    failing = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}
    failed = local.run(failing)["executionArn"]
    return {
        "sync": _refusal(lambda: sfn.start_sync_execution(stateMachineArn=machine, input="{}")),
        "redrive_succeeded": _refusal(lambda: sfn.redrive_execution(executionArn=ended)),
        "redrive_failed": _refusal(lambda: sfn.redrive_execution(executionArn=failed)),
        "validate_ok": _refusal(
            lambda: sfn.validate_state_machine_definition(definition=json.dumps(passing))["result"]
        ),
        "validate_bad": _refusal(
            lambda: [
                (d["severity"], d["code"])
                for d in sfn.validate_state_machine_definition(
                    definition='{"StartAt": "X", "States": {}}'
                )["diagnostics"]
            ]
        ),
        "versions": _refusal(
            lambda: sfn.list_state_machine_versions(stateMachineArn=machine)["stateMachineVersions"]
        ),
        "test_state": _refusal(
            lambda: sfn.test_state(definition=json.dumps(passing["States"]["P"]), roleArn=ROLE)
        ),
    }


def _history_pages(local: LocalSfn) -> dict[str, Any]:
    """GetExecutionHistory of a 6-event execution read 4 events at a time, and reversed."""
    two_passes = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Next": "Q"}, "Q": {"Type": "Pass", "End": True}},
    }
    execution_arn = local.run(two_passes)["executionArn"]
    sfn = local.sfn
    every = [e["id"] for e in sfn.get_execution_history(executionArn=execution_arn)["events"]]
    first = sfn.get_execution_history(executionArn=execution_arn, maxResults=4)
    pages = [[e["id"] for e in first["events"]]]
    if "nextToken" in first:
        second = sfn.get_execution_history(
            executionArn=execution_arn, maxResults=4, nextToken=first["nextToken"]
        )
        pages.append([e["id"] for e in second["events"]])
    reversed_ids = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True)
    return {
        "every": every,
        "pages": pages,
        "reversed": [e["id"] for e in reversed_ids["events"]],
        "bad_token": _refusal(
            lambda: len(
                sfn.get_execution_history(executionArn=execution_arn, nextToken="x" * 20)["events"]
            )
        ),
    }


def _start_over_quota(local: LocalSfn) -> Any:
    """StartExecution with an input one byte over the payload quota, and one under it."""
    machine = local.create({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    padding = moto_compat.MAX_PAYLOAD_BYTES - len(json.dumps({"pad": ""}))

    def start(extra: int) -> Any:
        body = json.dumps({"pad": "x" * (padding + extra)})
        started = local.sfn.start_execution(
            stateMachineArn=machine, name=f"quota-{next(_ids)}", input=body
        )
        return local.wait(started["executionArn"])["status"]

    return {"over": _refusal(lambda: start(1)), "under": _refusal(lambda: start(-100))}


def uncorrected_report(module: str, timeout_seconds: int = 60) -> dict[str, Any]:
    """``module._uncorrected_report()`` run in a fresh interpreter (moto unpatched)."""
    code = f"import json, {module} as t; print(json.dumps(t._uncorrected_report()))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def uncorrected() -> dict[str, Any]:
    return uncorrected_report("test_moto_compat")


def test_moto_still_succeeds_a_map_run_with_a_failed_item(uncorrected: dict[str, Any]) -> None:
    outputs = [None, {"grove": 1}, {"grove": 2}, {"grove": 3}]
    assert uncorrected["failed_item"] == ["SUCCEEDED", outputs]


def test_moto_still_rejects_an_integer_tolerated_failure_percentage(
    uncorrected: dict[str, Any],
) -> None:
    assert "ASLParserException" in uncorrected["integer_percentage"]


def test_moto_still_recurses_once_per_map_item(uncorrected: dict[str, Any]) -> None:
    assert uncorrected["long_map"] == ["RUNNING", ["RecursionError"]]


def test_moto_still_builds_a_client_per_invoke(uncorrected: dict[str, Any]) -> None:
    assert uncorrected["lambda_clients_for_10_invokes"] == 10


def test_moto_still_refuses_a_fail_state_reraising_a_states_error(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["reraised_states_error"] == "States.Runtime"


def test_moto_still_fails_map_run_reads_while_an_execution_starts(
    uncorrected: dict[str, Any],
) -> None:
    seen = uncorrected["map_runs_while_starting"]
    assert seen == {"list": 500, "describe": "SUCCEEDED", "missing": 500}


def test_moto_still_names_an_unnamed_start_none_and_accepts_any_name(
    uncorrected: dict[str, Any],
) -> None:
    # the second unnamed start collides with the first "None": refused once the first has
    # ended, the first handed back while it runs; never a second execution
    assert uncorrected["unnamed_starts"] in (
        ["None", "ExecutionAlreadyExists"],
        ["None", "the same execution"],
    )
    assert uncorrected["bad_name_started"] is True


def test_moto_still_writes_an_empty_result_writer_manifest(uncorrected: dict[str, Any]) -> None:
    assert uncorrected["result_files"] == {"FAILED": [], "PENDING": [], "SUCCEEDED": []}


def test_moto_still_reads_result_writer_parameters_from_the_maps_result(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["writer_parameters_read"] == """'[{"grove": 0}, {"grove": 1}]'"""


def test_moto_still_passes_a_map_result_over_the_payload_quota(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["map_result_over_quota"] == "SUCCEEDED"


def test_moto_still_lets_states_all_catch_data_limit_exceeded(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["caught_data_limit"] == "SUCCEEDED"


def test_moto_still_succeeds_the_map_run_of_a_stopped_execution(
    uncorrected: dict[str, Any],
) -> None:
    stopped = uncorrected["map_run_after_stop"]
    assert (stopped["execution"], stopped["map_run"]) == ("ABORTED", "SUCCEEDED")
    assert (stopped["items"]["failed"], stopped["items"]["pending"]) == (3, 0)


def test_moto_still_answers_operations_it_lacks_with_http_500(
    uncorrected: dict[str, Any],
) -> None:
    lacking = uncorrected["operations_moto_lacks"]
    for name in ("redrive_succeeded", "validate_ok", "versions", "test_state"):
        assert lacking[name] == [500, "500", False], name


def test_moto_still_returns_the_whole_history_oldest_first(uncorrected: dict[str, Any]) -> None:
    history = uncorrected["history_pages"]
    assert history["pages"] == [history["every"]]
    assert history["reversed"] == history["every"]
    assert history["bad_token"] == len(history["every"])


def test_moto_still_starts_an_execution_with_an_input_over_the_quota(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["input_over_quota"] == {"over": "FAILED", "under": "SUCCEEDED"}


def test_mock_aws_still_drops_the_default_session_and_its_hooks(
    uncorrected: dict[str, Any],
) -> None:
    assert uncorrected["mock_aws_keeps_session"] is False


# Corrected moto, in this process --------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[LocalSfn]:
    moto_compat.apply_corrections()
    with local_sfn() as running:
        yield running


@pytest.fixture(autouse=True)
def _handlers() -> None:
    HANDLERS.clear()
    HANDLERS["grove"] = grove


def test_a_failed_item_fails_the_map_run_and_the_maps_catch_catches_it(local: LocalSfn) -> None:
    # GIVEN a distributed Map without tolerance, with a Catch, over 4 items of which 1 fails
    catch = {"ErrorEquals": [THRESHOLD_ERROR], "ResultPath": "$.error", "Next": "Caught"}
    definition = distributed_map(invoke("grove"), Catch=[catch], Next="Caught")
    definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    # WHEN it runs
    execution = local.run(definition, items(4, failing=1))
    # THEN the Map Run failed, and the Catch routed its error to "Caught"
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["error"]["Error"] == THRESHOLD_ERROR
    history = local.history(execution["executionArn"])
    assert history.index("MapRunFailed") < history.index("MapStateFailed")
    assert "MapRunSucceeded" not in history
    map_run = local.map_run(execution["executionArn"])
    assert map_run["status"] == "FAILED"
    assert (map_run["itemCounts"]["succeeded"], map_run["itemCounts"]["failed"]) == (3, 1)


@pytest.mark.parametrize(
    ("tolerance", "extra_input", "failing", "status"),
    [
        ({}, {}, 1, "FAILED"),
        ({}, {}, 0, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 50}, {}, 1, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 50}, {}, 2, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 50}, {}, 3, "FAILED"),
        ({"ToleratedFailurePercentage": 20.0}, {}, 1, "FAILED"),
        ({"ToleratedFailureCount": 1}, {}, 1, "SUCCEEDED"),
        ({"ToleratedFailureCount": 1}, {}, 2, "FAILED"),
        ({"ToleratedFailureCount": 1, "ToleratedFailurePercentage": 60}, {}, 2, "FAILED"),
        ({"ToleratedFailureCountPath": "$.n"}, {"n": 2}, 2, "SUCCEEDED"),
        ({"ToleratedFailureCountPath": "$.n"}, {"n": 1}, 2, "FAILED"),
        ({"ToleratedFailurePercentagePath": "$.p"}, {"p": 25}, 1, "SUCCEEDED"),
        ({"ToleratedFailurePercentagePath": "$.p"}, {"p": 10}, 1, "FAILED"),
    ],
)
def test_the_map_run_fails_only_beyond_its_tolerance(
    local: LocalSfn,
    tolerance: dict[str, Any],
    extra_input: dict[str, Any],
    failing: int,
    status: str,
) -> None:
    # GIVEN a distributed Map over 4 items with a failure tolerance
    definition = distributed_map(invoke("grove"), **tolerance)
    # WHEN `failing` of its items fail
    execution = local.run(definition, {**items(4, failing), **extra_input})
    # THEN the execution fails with the threshold error exactly when the tolerance is exceeded
    assert (execution["status"], execution.get("error")) == (
        status,
        THRESHOLD_ERROR if status == "FAILED" else None,
    )


@pytest.mark.parametrize(
    ("failed", "total", "tolerated_count", "percentage", "exceeded"),
    [
        (0, 4, 0, 0.0, False),
        (1, 4, 0, 0.0, True),
        (1, 4, 1, 0.0, False),
        (2, 4, 1, 0.0, True),
        (1, 4, 0, 25.0, False),
        (2, 4, 0, 25.0, True),
        (3, 4, 5, 50.0, True),
        (3, 4, 2, 100.0, True),
    ],
)
def test_exceeds_tolerance_means_strictly_more_than_either_set_threshold(
    failed: int, total: int, tolerated_count: int, percentage: float, exceeded: bool
) -> None:
    assert moto_compat.exceeds_tolerance(failed, total, tolerated_count, percentage) is exceeded


@pytest.mark.parametrize("mode", ["DISTRIBUTED", "INLINE"])
def test_1500_items_complete_in_a_single_worker(local: LocalSfn, mode: str) -> None:
    execution = local.run(distributed_map({"Type": "Pass"}, mode, MaxConcurrency=1), items(1500))
    assert execution["status"] == "SUCCEEDED"
    assert len(json.loads(execution["output"])) == 1500


def test_invokes_reuse_one_cached_lambda_client(local: LocalSfn) -> None:
    # GIVEN a warm engine that counts the Lambda clients it creates
    local.run(distributed_map(invoke("grove")), items(1))
    created = count_lambda_clients()
    # WHEN 10 items invoke Lambda, from 5 concurrent Map workers
    execution = local.run(distributed_map(invoke("grove"), MaxConcurrency=5), items(10))
    # THEN no client was built for them
    assert execution["status"] == "SUCCEEDED"
    assert created == []


def test_clients_are_cached_per_default_session_region_and_service() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    moto_compat.apply_corrections()
    saved = boto3.DEFAULT_SESSION
    try:
        boto3.setup_default_session()
        barrier = threading.Barrier(8)

        def lambda_client(_: int) -> Any:
            barrier.wait()
            return boto_client.boto_client_for(REGION, "lambda")

        with ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(lambda_client, range(8)))
        assert len({id(client) for client in clients}) == 1
        assert boto_client.boto_client_for("eu-west-1", "lambda") is not clients[0]
        assert boto_client.boto_client_for(REGION, "s3") is not clients[0]
        boto3.setup_default_session()
        assert boto_client.boto_client_for(REGION, "lambda") is not clients[0]
    finally:
        boto3.DEFAULT_SESSION = saved


def test_apply_corrections_is_idempotent_and_checks_the_moto_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import moto
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )

    moto_compat.apply_corrections()
    patched = component.DistributedIterationComponent._map_run
    moto_compat.apply_corrections()
    assert component.DistributedIterationComponent._map_run is patched
    monkeypatch.setattr(moto_compat, "_applied", threading.Event())
    monkeypatch.setattr(moto, "__version__", "5.3.0")
    with pytest.raises(
        moto_compat.UnsupportedMotoVersion, match=r"moto==5\.3\.0 .*>=5\.2\.3,<5\.3"
    ):
        moto_compat.apply_corrections()


def test_a_failed_child_comes_back_whole_in_the_maps_result(local: LocalSfn) -> None:
    # GIVEN a distributed Map tolerating half its 4 items failing, of which 1 fails
    definition = distributed_map(invoke("grove"), ToleratedFailurePercentage=50)
    # WHEN it runs
    execution = local.run(definition, items(4, failing=1))
    # THEN the failed child's place holds AWS's record of it, the others their outputs
    failed, *succeeded = json.loads(execution["output"])
    assert succeeded == [{"grove": 1}, {"grove": 2}, {"grove": 3}]
    assert (failed["Status"], failed["Error"]) == ("FAILED", "ValueError")
    assert "grove 0 failed" in failed["Cause"]
    assert json.loads(failed["Input"]) == {"i": 0, "fail": True}
    assert ":execution:" in failed["ExecutionArn"]
    assert failed["ExecutionArn"].endswith(failed["Name"])
    assert {"StartDate", "StopDate", "StateMachineArn", "RedriveStatus"} <= set(failed)


def test_result_writer_writes_every_child_and_a_manifest_listing_them(local: LocalSfn) -> None:
    # GIVEN a distributed Map with a ResultWriter under a prefix made from the input
    bucket = f"compat-results-{next(_ids)}"
    local.s3.create_bucket(Bucket=bucket)
    definition = distributed_map(
        invoke("grove"), ResultWriter=result_writer(bucket), ToleratedFailurePercentage=50
    )
    # WHEN 5 items run, 2 of them failing
    execution = local.run(definition, {**items(5, failing=2), "run": "r7"})
    # THEN the Map's result is the Map Run and the manifest's place
    output = json.loads(execution["output"])
    assert set(output) == {"MapRunArn", "ResultWriterDetails"}
    details = output["ResultWriterDetails"]
    map_run_id = output["MapRunArn"].rsplit(":", 1)[1]
    assert details == {"Bucket": bucket, "Key": f"runs/r7/results/{map_run_id}/manifest.json"}

    def read(key: str) -> Any:
        return json.loads(local.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    # AND the manifest lists one file per status that has children, with its size
    manifest = read(details["Key"])
    assert (manifest["DestinationBucket"], manifest["MapRunArn"]) == (bucket, output["MapRunArn"])
    files = manifest["ResultFiles"]
    assert files["PENDING"] == []
    assert [f["Key"] for f in files["SUCCEEDED"] + files["FAILED"]] == [
        f"runs/r7/results/{map_run_id}/SUCCEEDED_0.json",
        f"runs/r7/results/{map_run_id}/FAILED_0.json",
    ]
    for listed in files["SUCCEEDED"] + files["FAILED"]:
        head = local.s3.head_object(Bucket=bucket, Key=listed["Key"])
        assert head["ContentLength"] == listed["Size"]
    # AND the files hold each child's record in item order: outputs and errors
    succeeded = read(files["SUCCEEDED"][0]["Key"])
    failed = read(files["FAILED"][0]["Key"])
    assert [json.loads(r["Output"]) for r in succeeded] == [{"grove": i} for i in (2, 3, 4)]
    assert [json.loads(r["Input"])["i"] for r in failed] == [0, 1]
    assert {r["Status"] for r in succeeded} == {"SUCCEEDED"}
    assert [(r["Status"], r["Error"]) for r in failed] == [("FAILED", "ValueError")] * 2


@pytest.mark.parametrize("catch", [False, True])
def test_a_map_result_over_the_payload_quota_fails_the_execution_uncaught(
    local: LocalSfn, catch: bool
) -> None:
    # GIVEN a distributed Map whose 300 children return about 1 KB each, its result
    # discarded (ResultPath null), with or without a Catch of States.ALL
    HANDLERS["padded"] = padded
    fields: dict[str, Any] = {"MaxConcurrency": 10, "ResultPath": None}
    if catch:
        fields["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]
        fields["Next"] = "Caught"
    definition = distributed_map(invoke("padded"), **fields)
    if catch:
        definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    # WHEN it runs
    execution = local.run(definition, items(PADDED_ITEMS))
    # THEN the execution fails with States.DataLimitExceeded, which no Catch takes
    assert (execution["status"], execution["error"]) == ("FAILED", "States.DataLimitExceeded")
    assert "'Map' returned a result with a size exceeding" in execution["cause"]


def test_a_task_result_over_the_quota_is_not_caught_by_states_all(local: LocalSfn) -> None:
    HANDLERS["huge"] = huge
    execution = local.run(caught_huge_result())
    assert (execution["status"], execution["error"]) == ("FAILED", "States.DataLimitExceeded")


def test_a_map_result_within_the_quota_passes(local: LocalSfn) -> None:
    HANDLERS["padded"] = padded
    definition = distributed_map(invoke("padded"), MaxConcurrency=10, ResultPath=None)
    assert local.run(definition, items(200))["status"] == "SUCCEEDED"


def test_an_unnamed_start_gets_a_uuid_name_as_on_aws(local: LocalSfn) -> None:
    # GIVEN a state machine WHEN two executions start without a name
    arn = local.create({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    first = local.sfn.start_execution(stateMachineArn=arn)["executionArn"]
    second = local.sfn.start_execution(stateMachineArn=arn)["executionArn"]
    # THEN each is named by a fresh UUID, and both run
    names = [first.rsplit(":", 1)[1], second.rsplit(":", 1)[1]]
    assert names[0] != names[1]
    assert [str(uuid.UUID(name)) for name in names] == names
    assert local.wait(second)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("name", ["my run", "a/b", "x" * 81, "tab\there", "a:b", "50%"])
def test_a_name_aws_refuses_is_refused_with_invalid_name(local: LocalSfn, name: str) -> None:
    arn = local.create({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as refused:
        local.sfn.start_execution(stateMachineArn=arn, name=name)
    assert refused.value.response["Error"]["Code"] == "InvalidName"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # AND the server still answers, and a name AWS accepts starts
    started = local.sfn.start_execution(stateMachineArn=arn, name="données-1.x_y")
    assert local.wait(started["executionArn"])["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("name", "valid"),
    [("run-1", True), ("données", True), ("x" * 80, True), ("x" * 81, False), ("", False)]
    + [(f"a{c}b", False) for c in ' \t\n<>{}[]?*"#%\\^|~`$&,;:/\x00\x1f\x7f\x85\x9f'],
)
def test_execution_names_are_checked_as_aws_checks_them(name: str, valid: bool) -> None:
    assert moto_compat.is_valid_execution_name(name) is valid


# Departures avoided or documented, and features groveflow relies on ----------------


@pytest.mark.parametrize("unsupported", ["ItemBatcher", "EXPRESS"])
def test_item_batcher_and_express_children_are_still_rejected(
    local: LocalSfn, unsupported: str
) -> None:
    definition = distributed_map(invoke("grove"))
    if unsupported == "ItemBatcher":
        definition["States"]["Map"]["ItemBatcher"] = {"MaxItemsPerBatch": 2}
    else:
        definition["States"]["Map"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "EXPRESS"
    with pytest.raises(ClientError, match="ASLParserException"):
        local.create(definition)


def test_timeout_seconds_fails_the_task_on_time_but_does_not_stop_the_handler(
    local: LocalSfn,
) -> None:
    release, finished = threading.Event(), threading.Event()

    def slow(_: Any) -> dict[str, Any]:
        release.wait(60)  # held well past the timeout, however busy the machine
        finished.set()
        return {}

    HANDLERS["slow"] = slow
    started = time.monotonic()
    definition = {"StartAt": "T", "States": {"T": invoke("slow", TimeoutSeconds=1, End=True)}}
    execution = local.run(definition)
    assert (execution["status"], execution["error"]) == ("FAILED", "States.Timeout")
    # not before the timeout; and on time, not after the handler: it is still held
    assert time.monotonic() - started >= 1.0
    assert not finished.is_set()
    release.set()
    assert finished.wait(5)


def test_item_reader_max_concurrency_path_and_null_output_path(local: LocalSfn) -> None:
    bucket = f"compat-plan-{next(_ids)}"
    local.s3.create_bucket(Bucket=bucket)
    local.s3.put_object(Bucket=bucket, Key="run/plan.json", Body=json.dumps(items(3)["items"]))
    reader = {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
    }
    child = invoke("grove", OutputPath=None)
    definition = distributed_map(child, ItemReader=reader, MaxConcurrencyPath="$.mc")
    execution = local.run(definition, {"bucket": bucket, "key": "run/plan.json", "mc": 2})
    assert json.loads(execution["output"]) == [{}, {}, {}]
    assert local.map_run(execution["executionArn"])["maxConcurrency"] == 2


def test_fail_state_error_path_and_cause_path(local: LocalSfn) -> None:
    fail = {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}
    definition = {"StartAt": "F", "States": {"F": fail}}
    execution = local.run(definition, {"e": "GroveMissing", "c": "2 of 8 groves missing"})
    assert (execution["error"], execution["cause"]) == ("GroveMissing", "2 of 8 groves missing")


def test_a_fail_state_reraises_a_caught_states_error(local: LocalSfn) -> None:
    reraise = {"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"}
    execution = local.run({"StartAt": "F", "States": {"F": reraise}}, THRESHOLD_FAILURE)
    assert (execution["error"], execution["cause"]) == (THRESHOLD_ERROR, "1 of 4 items failed")


def test_retry_with_full_jitter_retries_and_catch_keeps_input_under_result_path(
    local: LocalSfn,
) -> None:
    calls: list[int] = []

    def flaky(_: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("transient")
        raise KeyError("permanent")

    HANDLERS["flaky"] = flaky
    retry = {
        "ErrorEquals": ["RuntimeError"],
        "IntervalSeconds": 1,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
        "MaxDelaySeconds": 1,
    }
    catch = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}
    task = invoke("flaky", Retry=[retry], Catch=[catch], Next="Caught")
    definition = {"StartAt": "T", "States": {"T": task, "Caught": {"Type": "Pass", "End": True}}}
    execution = local.run(definition, {"keep": 1})
    output = json.loads(execution["output"])
    assert (output["keep"], output["error"]["Error"]) == (1, "KeyError")
    assert local.history(execution["executionArn"]).count("TaskScheduled") == 3


@pytest.mark.parametrize(
    ("metadata", "error"), [(True, "Lambda.TooManyRequestsException"), (False, "States.Runtime")]
)
def test_a_throttle_needs_response_metadata_to_surface_as_lambda_error(
    local: LocalSfn, metadata: bool, error: str
) -> None:
    throttle = {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}
    response: dict[str, Any] = {"Error": throttle}
    if metadata:
        response["ResponseMetadata"] = {"HTTPStatusCode": 429, "RequestId": "local"}

    def throttled(_: Any) -> None:
        raise ClientError(response, "Invoke")  # type: ignore[arg-type]

    HANDLERS["throttled"] = throttled
    execution = local.run({"StartAt": "T", "States": {"T": invoke("throttled", End=True)}})
    assert execution["error"] == error


def test_map_runs_read_while_an_execution_starts(local: LocalSfn) -> None:
    # GIVEN an execution whose interpreter has not yet built its environment
    # WHEN its Map Runs are listed, and an earlier execution's Map Run described
    seen = _map_runs_while_starting(local)
    # THEN it has none yet, the earlier one is found, a missing one is a 400, as on AWS
    assert seen == {"list": [], "describe": "SUCCEEDED", "missing": 400}


def test_map_run_item_counts_progress_while_running(local: LocalSfn) -> None:
    # GIVEN children that block until released
    release = threading.Event()
    HANDLERS["held"] = lambda event: release.wait(10) and grove(event)
    definition = distributed_map(invoke("held"), MaxConcurrency=2)
    execution_arn = local.start(definition, items(5, failing=1))
    # WHEN two are in flight
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = local.sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
        if started and local.map_run(execution_arn)["itemCounts"]["running"] == 2:
            break
        time.sleep(0.02)
    during = local.map_run(execution_arn)["itemCounts"]
    release.set()
    execution = local.wait(execution_arn)
    after = local.map_run(execution_arn)["itemCounts"]
    # THEN the Map Run reports them running, then 4 succeeded and 1 failed of 5
    assert (during["running"], during["succeeded"]) == (2, 0)
    assert (after["running"], after["succeeded"], after["failed"], after["total"]) == (0, 4, 1, 5)
    # AND the parent's history holds no event of its child executions
    assert execution["status"] == "FAILED"
    history = local.history(execution_arn)
    assert history.count("ExecutionStarted") == 1
    assert not [event for event in history if "Iteration" in event or "Task" in event]


def test_the_interpreter_loads_without_the_batch_and_ec2_backends() -> None:
    # GIVEN a fresh interpreter WHEN the corrections (which import the ASL parser) are applied
    code = (
        "import sys, json\n"
        "from groveflow.local import moto_compat\n"
        "moto_compat.apply_corrections()\n"
        "before = {m: m in sys.modules for m in ('moto.ec2', 'moto.batch', 'moto.batch.utils')}\n"
        "import moto.batch\n"
        "print(json.dumps({**before, 'real_batch': hasattr(moto.batch, 'batch_backends')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # THEN EC2's models (0.7 s) were not loaded, and a later Batch import still gets the real one
    assert json.loads(done.stdout) == {
        "moto.ec2": False,
        "moto.batch": False,
        "moto.batch.utils": True,
        "real_batch": True,
    }


def test_a_stopped_executions_map_run_is_aborted_with_its_unstarted_items_pending(
    local: LocalSfn,
) -> None:
    # GIVEN a 4-item Map Run, one child at a time, stopped while its first child runs
    stopped = _map_run_after_stop(local)
    # THEN as on AWS: the Map Run is ABORTED, the running child aborted, the rest pending
    assert (stopped["execution"], stopped["map_run"]) == ("ABORTED", "ABORTED")
    assert stopped["items"] == {
        "pending": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "timedOut": 0,
        "aborted": 1,
        "total": 4,
    }
    assert stopped["running_executions"] == 0


def test_operations_moto_lacks_answer_as_aws_does(local: LocalSfn) -> None:
    # WHEN the endpoint is asked what moto does not implement
    lacking = _operations_moto_lacks(local)
    # THEN each answers as AWS would, in JSON: never an HTTP 500 page
    assert lacking == {
        "sync": [400, "StateMachineTypeNotSupported", True],
        "redrive_succeeded": [400, "ExecutionNotRedrivable", True],
        "redrive_failed": [400, "ExecutionNotRedrivable", True],
        "validate_ok": "OK",
        "validate_bad": [("ERROR", "SCHEMA_VALIDATION_FAILED")],
        "versions": [],
        "test_state": [400, "UnknownOperationException", True],
    }


def test_execution_history_pages_and_reverses_as_aws_does(local: LocalSfn) -> None:
    # GIVEN an execution of 6 events WHEN its history is read 4 at a time and reversed
    history = _history_pages(local)
    # THEN pages of 4 and 2 follow each other, newest first when reversed
    assert history["every"] == [1, 2, 3, 4, 5, 6]
    assert history["pages"] == [[1, 2, 3, 4], [5, 6]]
    assert history["reversed"] == [6, 5, 4, 3, 2, 1]
    assert history["bad_token"] == [400, "InvalidToken", True]


def test_an_input_over_the_quota_is_refused_at_start_execution(local: LocalSfn) -> None:
    # WHEN executions start with an input one byte over 262,144 and one just under it
    # THEN the first is refused by StartExecution, as on AWS; the second runs
    assert _start_over_quota(local) == {
        "over": [400, "InvalidExecutionInput", True],
        "under": "SUCCEEDED",
    }

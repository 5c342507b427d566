"""The command line as a user runs it, and the local endpoint as the AWS CLI and boto3 see it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, load_event, unique_name
from groveflow.layout import keys
from groveflow.local.engine import mirrored

# The Quick start's input without its run_id ("digits-demo"): the execution's name names the run.
UNNAMED_DIGITS = json.dumps(
    {key: value for key, value in load_event("train-digits.json").items() if key != "run_id"}
)

GROVEFLOW = [sys.executable, "-m", "groveflow.cli"]
AWS_ENV = {
    **os.environ,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def _groveflow(
    *args: str, timeout: int = 300, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GROVEFLOW, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_train_prints_a_json_summary_and_leaves_the_model_on_disk(tmp_path: Path) -> None:
    # WHEN the Quick start's example runs with --json
    done = _groveflow(
        "train",
        "events/train-digits.json",
        "--json",
        "--workers",
        "2",
        "--state-dir",
        str(tmp_path),
    )
    # THEN it succeeds, reports digits accuracy >= 0.95, and the model directory holds the manifest
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "SUCCEEDED"
    assert summary["trees_built"] == 100
    assert summary["metrics"]["accuracy"] >= 0.95
    manifest = json.loads((Path(summary["model_dir"]) / "manifest.json").read_text())
    assert manifest["run_id"] == summary["run_id"]
    assert summary["cost"]["total_usd"] > 0
    assert {"Plan", "BuildGroves", "Merge"} <= set(summary["phases"])
    assert sum(summary["phases"].values()) <= summary["seconds"]
    # and the report and export commands work on it
    report = _groveflow("report", summary["run_id"], "--state-dir", str(tmp_path), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    written = Path(report.stdout.strip())  # in the working directory, by default
    assert written == tmp_path / f"{summary['run_id']}-report" / "report.html"
    assert written.read_text().count("data:image/png;base64,") >= 3
    exported = _groveflow(
        "export",
        summary["run_id"],
        "--state-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "m.skops"),
        "--format",
        "skops",
    )
    assert exported.returncode == 0, exported.stderr


def test_train_text_summary_names_the_run_and_model(tmp_path: Path) -> None:
    request = tmp_path / "wine.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}))
    done = _groveflow(
        "train", str(request), "--run-id", "wine-cli", "--state-dir", str(tmp_path / "state")
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "run       wine-cli"
    assert lines[1] == "trees     4 of 4 in 2 groves"
    assert (
        lines[-1]
        == f"model     {tmp_path / 'state' / 's3' / 'groveflow-local' / 'runs' / 'wine-cli' / 'model'}"
    )


def test_malformed_input_file_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": ')
    done = _groveflow("train", str(bad))
    assert done.returncode != 0
    assert f"groveflow: {bad} is not valid JSON" in done.stderr


def test_bad_request_fails_with_the_named_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": {"uri": "sklearn:digits"}, "n_trees": 0}))
    done = _groveflow("train", str(bad), "--state-dir", str(tmp_path / "state"))
    # refused before the engine starts, as a usage error: nothing written
    assert done.returncode == 2
    assert done.stderr.startswith("groveflow: InvalidRequest: n_trees=0 is out of range")
    assert not (tmp_path / "state").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running ``groveflow serve``: its endpoint, state dir, and what it printed since."""

    endpoint: str
    state_dir: Path
    lines: list[str]
    process: subprocess.Popen[str]

    def assert_up(self) -> None:
        """The server process is alive and answers."""
        assert self.process.poll() is None, "".join(self.lines)
        _served_sfn(self.endpoint).list_state_machines()


@contextlib.contextmanager
def _serving(state: Path) -> Iterator[Served]:
    port = _free_port()
    server = subprocess.Popen(
        [*GROVEFLOW, "serve", "--port", str(port), "--workers", "2", "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("Ctrl-C"):
            break
    running = Served(f"http://127.0.0.1:{port}", state, [], server)
    # Keep reading what it prints, so its pipe never fills.
    threading.Thread(target=lambda: running.lines.extend(server.stdout or []), daemon=True).start()
    try:
        yield running
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def served_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with _serving(tmp_path_factory.mktemp("served")) as running:
        yield running


@pytest.fixture(scope="module")
def served(served_engine: Served) -> str:
    return served_engine.endpoint


def _aws(endpoint: str, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "awscli", *args, "--endpoint-url", endpoint, "--output", "json"],
        env=AWS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.startswith("{") else done.stdout


TRAIN_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:groveflow-TrainStateMachine"


def _served_sfn(served: str) -> Any:
    """A boto3 Step Functions client for the served local endpoint."""
    import boto3

    return boto3.client(
        "stepfunctions",
        endpoint_url=served,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def _train_on_served(request: Path, served: str) -> list[str]:
    """``groveflow train`` arguments against the served endpoint, as against a deployed stack."""
    return [
        "train",
        str(request),
        "--state-machine-arn",
        TRAIN_ARN,
        "--endpoint-url",
        served,
        "--region",
        "us-east-1",
    ]


def test_aws_cli_creates_starts_waits_describes_and_fetches_the_model(
    served: str, tmp_path: Path
) -> None:
    # GIVEN the served engine's train definition, as the AWS CLI reads it
    definition = _aws(
        served, "stepfunctions", "describe-state-machine", "--state-machine-arn", TRAIN_ARN
    )["definition"]
    # WHEN a user creates a state machine with it and starts the example input
    created = _aws(
        served,
        "stepfunctions",
        "create-state-machine",
        "--name",
        unique_name("cli"),
        "--definition",
        definition,
        "--role-arn",
        "arn:aws:iam::123456789012:role/any",
    )
    name = unique_name("awscli")
    started = _aws(
        served,
        "stepfunctions",
        "start-execution",
        "--state-machine-arn",
        created["stateMachineArn"],
        "--name",
        name,
        "--input",
        UNNAMED_DIGITS,
    )
    for _ in range(600):
        described = _aws(
            served,
            "stepfunctions",
            "describe-execution",
            "--execution-arn",
            started["executionArn"],
        )
        if described["status"] != "RUNNING":
            break
        time.sleep(0.5)
    # THEN it succeeds, and the model manifest can be copied out with aws s3 cp
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["run_id"] == name
    _aws(served, "s3", "cp", output["model_uri"], str(tmp_path / "manifest.json"))
    assert json.loads((tmp_path / "manifest.json").read_text())["trees_built"] == 100
    history = _aws(
        served, "stepfunctions", "get-execution-history", "--execution-arn", started["executionArn"]
    )
    assert any(e["type"] == "MapRunSucceeded" for e in history["events"])


def test_boto3_and_follow_report_the_map_run_counts(served: str) -> None:

    from groveflow.follow import Progress, follow

    sfn = _served_sfn(served)
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 12, "grove_size": 2}
    arn = sfn.start_execution(
        stateMachineArn=TRAIN_ARN, name=unique_name("boto3"), input=json.dumps(request)
    )["executionArn"]
    seen: list[Progress] = []
    description = follow(sfn, arn, seen.append, poll_seconds=0.1)
    assert description["status"] == "SUCCEEDED"
    run = sfn.list_map_runs(executionArn=arn)["mapRuns"][0]
    counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"])["itemCounts"]
    assert (
        (seen[-1].succeeded, seen[-1].failed, seen[-1].total)
        == (counts["succeeded"], counts["failed"], counts["total"])
        == (6, 0, 6)
    )
    assert seen[-1].map_label == "BuildGroves"
    assert all(p.succeeded <= p.total for p in seen)


def test_train_on_a_state_machine_arn_follows_with_the_same_code_path(
    served: str, tmp_path: Path
) -> None:
    request = tmp_path / "wine.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}))
    done = _groveflow(*_train_on_served(request, served), "--json", env=AWS_ENV)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "SUCCEEDED"
    assert summary["trees_built"] == 4
    assert summary["model_uri"].startswith("s3://groveflow-local/runs/")
    # and its cost, read from the functions' REPORT log lines: plan, 2 groves, merge
    cost = summary["cost"]
    assert cost["lambda_requests"] == 4
    assert cost["gb_seconds"] > 0
    assert cost["total_usd"] > cost["step_functions_usd"] > 0


def _without_aws_configuration() -> dict[str, str]:
    """The environment of a user with no AWS region, credentials or config files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def test_train_on_a_warm_served_engine_needs_only_its_endpoint(
    served_engine: Served, tmp_path: Path
) -> None:
    # GIVEN a user with no AWS configuration at all, and a running groveflow serve
    request = tmp_path / "iris.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 2}))
    # WHEN they train naming only the endpoint
    endpoint = served_engine.endpoint
    done = _groveflow(
        "train",
        str(request),
        "--endpoint-url",
        endpoint,
        "--json",
        env=_without_aws_configuration(),
    )
    # THEN the endpoint's train state machine ran it
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "SUCCEEDED"
    assert summary["execution_arn"].startswith(TRAIN_ARN.replace(":stateMachine:", ":execution:"))
    # ... and the server mirrored the run to its state dir as it ended, for groveflow report
    manifest = mirrored(served_engine.state_dir, keys.manifest(summary["run_id"]))
    deadline = time.monotonic() + 15
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert json.loads(manifest.read_text())["run_id"] == summary["run_id"]
    assert any(line.startswith(f"ended: {summary['run_id']},") for line in served_engine.lines)


@pytest.mark.parametrize(
    ("extra_env", "expected"),
    [
        ({}, "no AWS region: pass --region or set AWS_DEFAULT_REGION"),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "NoCredentialsError: Unable to locate credentials"),
    ],
)
def test_a_deployed_stack_without_aws_configuration_is_a_clear_error(
    tmp_path: Path, extra_env: dict[str, str], expected: str
) -> None:
    request = tmp_path / "iris.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:iris"}}))
    environment = {**_without_aws_configuration(), **extra_env}
    done = _groveflow("train", str(request), "--stack", "groveflow", timeout=60, env=environment)
    assert done.returncode != 0
    assert done.stderr.strip() == f"groveflow: {expected}"


def test_predict_in_a_new_process_scores_with_a_model_trained_earlier(tmp_path: Path) -> None:
    # GIVEN a model trained by one groveflow process
    state = str(tmp_path / "state")
    request = tmp_path / "wine.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}))
    assert (
        _groveflow("train", str(request), "--run-id", "wine-model", "--state-dir", state).returncode
        == 0
    )
    # WHEN another process scores rows with it
    scoring = tmp_path / "score.json"
    scoring.write_text(
        json.dumps({"model": "wine-model", "data": {"uri": "sklearn:wine"}, "shard_rows": 100})
    )
    done = _groveflow("predict", str(scoring), "--state-dir", state, "--json")
    # THEN the predictions are on disk, one part per shard, 178 rows in all
    assert done.returncode == 0, done.stdout + done.stderr
    output = json.loads(done.stdout)["predictions"]
    assert (output["n_rows"], output["n_parts"]) == (178, 2)
    parts = sorted(Path(output["predictions_dir"]).glob("part-*.csv"))
    assert sum(len(p.read_text().splitlines()) - 1 for p in parts) == 178
    # ... and each row's prediction is the model's own, in row order
    from sklearn.datasets import load_wine

    from groveflow.artifact import load_forest

    rows = [line.split(",") for p in parts for line in p.read_text().splitlines()[1:]]
    forest = load_forest(str(mirrored(Path(state), keys.model_prefix("wine-model"))))
    expected = forest.predict(load_wine().data)
    assert [int(r[0]) for r in rows] == list(range(178))
    assert [r[1] for r in rows] == [str(label) for label in expected]


def test_invoke_runs_one_handler_in_place_of_sam_local_invoke(tmp_path: Path) -> None:
    # GIVEN a Plan event, as the state machine would send it
    event = tmp_path / "plan-event.json"
    event.write_text(
        json.dumps(
            {
                "request": {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2},
                "execution_name": "invoked",
            }
        )
    )
    # WHEN the handler is invoked alone
    done = _groveflow("invoke", "PlanFunction", str(event), "--state-dir", str(tmp_path / "state"))
    # THEN it prints the function's result
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["run_id"], result["n_groves"]) == ("invoked", 2)
    # and a bad event prints Lambda's error document and fails
    event.write_text(json.dumps({"request": {"data": {"uri": "sklearn:iris"}, "n_trees": 0}}))
    failed = _groveflow(
        "invoke", "PlanFunction", str(event), "--state-dir", str(tmp_path / "state")
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "InvalidRequest"


@pytest.mark.parametrize("when", ["map under way", "right after the start"])
def test_ctrl_c_stops_following_not_the_run(served: str, tmp_path: Path, when: str) -> None:
    import signal

    # GIVEN a long run followed on the served endpoint
    request = tmp_path / "slow.json"
    request.write_text(
        json.dumps(
            {
                "data": {"uri": "sklearn:iris"},
                "n_trees": 3000,
                "grove_size": 1,
                "max_concurrency": 1,
            }
        )
    )
    follower = subprocess.Popen(
        [*GROVEFLOW, *_train_on_served(request, served)],
        cwd=ROOT,
        env=AWS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # ... until it has started and its Map is under way (waiting on the events, not a clock)
    assert follower.stderr is not None
    started = follower.stderr.readline()
    assert started.startswith("started "), started
    sfn = _served_sfn(served)
    if when == "map under way":
        _wait_for_map_run(lambda: sfn.list_map_runs(executionArn=started.split()[1]))
    # WHEN the user presses Ctrl-C (also before following has begun: the start is the line)
    follower.send_signal(signal.SIGINT)
    _, stderr = follower.communicate(timeout=60)
    # THEN following stops with a hint naming the execution, and the execution goes on
    assert follower.returncode == 130, stderr
    arn = stderr.split("groveflow follow ", 1)[1].split()[0]
    assert arn == started.split()[1]
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.stop_execution(executionArn=arn)  # 3,000 groves: free the served engine


# --------------------------------------------------------------------------- real clients

UUID_NAME = re.compile(r":[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _aws_raw(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awscli", *args, "--endpoint-url", endpoint, "--output", "json"],
        env=AWS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_ended(describe: Any, arn: str) -> dict[str, Any]:
    """Describe the execution until it has ended (polling: it is another process's)."""
    deadline = time.monotonic() + 300
    while True:
        described: dict[str, Any] = describe(arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.25)


def _wait_for_map_run(list_map_runs: Any) -> None:
    """Until the execution's Map has started (moto ignores a stop that comes before it)."""
    deadline = time.monotonic() + 120
    while not list_map_runs()["mapRuns"]:
        assert time.monotonic() < deadline, "the Map never started"
        time.sleep(0.1)


def test_the_aws_cli_drives_serve_with_and_without_names(
    served_engine: Served, tmp_path: Path
) -> None:
    endpoint = served_engine.endpoint

    def sfn(*args: str) -> Any:
        done = _aws_raw(endpoint, "stepfunctions", *args)
        assert done.returncode == 0, done.stderr
        served_engine.assert_up()
        return json.loads(done.stdout) if done.stdout.strip() else None

    # GIVEN the AWS docs' way to start a run: no --name
    started = sfn(
        "start-execution",
        "--state-machine-arn",
        TRAIN_ARN,
        "--input",
        UNNAMED_DIGITS,
    )
    # THEN AWS's answer: a generated UUID name, and the server stays up
    assert UUID_NAME.search(started["executionArn"]), started
    named = sfn(
        "start-execution",
        "--state-machine-arn",
        TRAIN_ARN,
        "--name",
        unique_name("named"),
        "--input",
        json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2}),
    )
    # WHEN the user lists, describes and reads the history and Map Runs of both
    listed = sfn("list-executions", "--state-machine-arn", TRAIN_ARN)["executions"]
    assert {started["executionArn"], named["executionArn"]} <= {e["executionArn"] for e in listed}
    for arn in (started["executionArn"], named["executionArn"]):
        described = _wait_ended(lambda a: sfn("describe-execution", "--execution-arn", a), arn)
        assert described["status"] == "SUCCEEDED", described
        history = sfn("get-execution-history", "--execution-arn", arn)["events"]
        assert history[-1]["type"] == "ExecutionSucceeded"
        runs = sfn("list-map-runs", "--execution-arn", arn)["mapRuns"]
        counts = sfn("describe-map-run", "--map-run-arn", runs[0]["mapRunArn"])["itemCounts"]
        assert counts["failed"] == 0 and counts["succeeded"] == counts["total"] > 0
    # ... and copies the unnamed run's model out with aws s3 cp
    output = json.loads(
        sfn("describe-execution", "--execution-arn", started["executionArn"])["output"]
    )
    assert output["run_id"] == started["executionArn"].rsplit(":", 1)[1]
    copied = _aws_raw(endpoint, "s3", "cp", output["model_uri"], str(tmp_path / "manifest.json"))
    assert copied.returncode == 0, copied.stderr
    assert json.loads((tmp_path / "manifest.json").read_text())["trees_built"] == 100
    # ... and stops a long run
    long_run = sfn(
        "start-execution",
        "--state-machine-arn",
        TRAIN_ARN,
        "--input",
        json.dumps(
            {
                "data": {"uri": "sklearn:iris"},
                "n_trees": 2000,
                "grove_size": 1,
                "max_concurrency": 1,
            }
        ),
    )
    _wait_for_map_run(lambda: sfn("list-map-runs", "--execution-arn", long_run["executionArn"]))
    sfn("stop-execution", "--execution-arn", long_run["executionArn"])
    stopped = _wait_ended(
        lambda a: sfn("describe-execution", "--execution-arn", a), long_run["executionArn"]
    )
    assert stopped["status"] == "ABORTED", (stopped.get("error"), stopped.get("cause"))
    # ... and a name AWS refuses gets AWS's error, not a dead server
    refused = _aws_raw(
        endpoint,
        "stepfunctions",
        "start-execution",
        "--state-machine-arn",
        TRAIN_ARN,
        "--name",
        "bad name/with*chars",
        "--input",
        "{}",
    )
    assert refused.returncode != 0
    assert "InvalidName" in refused.stderr
    served_engine.assert_up()


def test_boto3_drives_serve_with_and_without_names(served_engine: Served, tmp_path: Path) -> None:
    import boto3
    from botocore.exceptions import ClientError

    sfn = _served_sfn(served_engine.endpoint)
    request = json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2})
    unnamed = sfn.start_execution(stateMachineArn=TRAIN_ARN, input=request)["executionArn"]
    served_engine.assert_up()
    assert UUID_NAME.search(unnamed)
    named = sfn.start_execution(
        stateMachineArn=TRAIN_ARN, name=unique_name("boto3-named"), input=request
    )["executionArn"]
    for arn in (unnamed, named):
        described = _wait_ended(lambda a: sfn.describe_execution(executionArn=a), arn)
        assert described["status"] == "SUCCEEDED", described
        assert sfn.get_execution_history(executionArn=arn)["events"][-1]["type"] == (
            "ExecutionSucceeded"
        )
        run = sfn.list_map_runs(executionArn=arn)["mapRuns"][0]
        assert sfn.describe_map_run(mapRunArn=run["mapRunArn"])["itemCounts"]["succeeded"] == 2
        served_engine.assert_up()
    listed = {
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=TRAIN_ARN)["executions"]
    }
    assert {unnamed, named} <= listed
    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=TRAIN_ARN, name="x" * 81, input=request)
    assert refused.value.response["Error"]["Code"] == "InvalidName"
    s3 = boto3.client(
        "s3",
        endpoint_url=served_engine.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    output = json.loads(sfn.describe_execution(executionArn=unnamed)["output"])
    s3.download_file("groveflow-local", keys.manifest(output["run_id"]), str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text())["trees_built"] == 4
    long_run = sfn.start_execution(
        stateMachineArn=TRAIN_ARN,
        input=json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 2000, "grove_size": 1}),
    )["executionArn"]
    _wait_for_map_run(lambda: sfn.list_map_runs(executionArn=long_run))
    sfn.stop_execution(executionArn=long_run)
    stopped = _wait_ended(lambda a: sfn.describe_execution(executionArn=a), long_run)
    assert stopped["status"] == "ABORTED", (stopped.get("error"), stopped.get("cause"))
    served_engine.assert_up()


def _files(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _trained_iris(tmp_path: Path, run_id: str, n_trees: int) -> Path:
    """A state directory holding an iris model trained by ``groveflow train --run-id``."""
    state = tmp_path / "state"
    request = tmp_path / "iris.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": n_trees}))
    trained = _groveflow("train", str(request), "--run-id", run_id, "--state-dir", str(state))
    assert trained.returncode == 0, trained.stderr
    return state


def test_serve_restores_its_state_dir_and_guards_the_runs_in_it(tmp_path: Path) -> None:
    # GIVEN a model trained by a local run in a state directory
    state = _trained_iris(tmp_path, "kept", 4)
    model = mirrored(state, keys.model_prefix("kept"))
    before = _files(model)
    with _serving(state) as served_state:
        sfn = _served_sfn(served_state.endpoint)

        def run(execution_input: dict[str, Any]) -> dict[str, Any]:
            arn = sfn.start_execution(
                stateMachineArn=execution_input.pop("arn", TRAIN_ARN),
                input=json.dumps(execution_input),
            )["executionArn"]
            return _wait_ended(lambda a: sfn.describe_execution(executionArn=a), arn)

        # WHEN a client trains the same run id with a different input
        # (another seed: more trees would grow the forest, issue 19)
        other = run({"data": {"uri": "sklearn:iris"}, "n_trees": 4, "seed": 99, "run_id": "kept"})
        # THEN serve refuses it by name and the stored model is byte for byte the same
        assert (other["status"], other["error"]) == ("FAILED", "InvalidRequest"), other
        assert "already used with a different input" in other["cause"]
        assert _files(model) == before
        # ... the same input resumes (nothing rebuilt: the forest bytes are the same)
        same = run({"data": {"uri": "sklearn:iris"}, "n_trees": 4, "run_id": "kept"})
        assert same["status"] == "SUCCEEDED", same
        assert _files(model)["forest.gfa"] == before["forest.gfa"]
        # ... and the earlier model scores rows through serve
        scored = run(
            {
                "arn": TRAIN_ARN.replace("TrainStateMachine", "PredictStateMachine"),
                "model": "kept",
                "data": {"uri": "sklearn:iris"},
                "prediction_id": "kept-scores",
            }
        )
        assert scored["status"] == "SUCCEEDED", scored
        served_state.assert_up()
    assert mirrored(state, keys.predictions_manifest("kept-scores")).is_file()


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train", "events/train-digits.json", "--workers", "-1"],
            "groveflow train: argument --workers: must be a whole number of 1 or more, "
            "got '-1' (see groveflow train --help)",
        ),
        (
            ["serve", "--port", "70000"],
            "groveflow serve: argument --port: must be a port from 1 to 65535, got '70000' "
            "(see groveflow serve --help)",
        ),
        (
            ["invoke", "NoSuchFunction", "events/train-digits.json"],
            "groveflow: no function 'NoSuchFunction' in template.yaml; accepted: "
            "BuildGroveFunction, FinishPredictionsFunction, IngestFunction, "
            "MergeFunction, PlanFunction, PlanPredictionsFunction, ScoreRoundFunction, "
            "ScoreShardFunction, SearchPlanFunction, ValidateRequestFunction",
        ),
        (
            ["invoke", "PlanFunction", "no-such-event.json"],
            "groveflow: no such event file: no-such-event.json",
        ),
        (["report", "../x"], "groveflow: InvalidRequest: RUN='../x' is not accepted"),
    ],
)
def test_usage_errors_are_one_line_naming_the_problem(args: list[str], expected: str) -> None:
    done = _groveflow(*args, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.strip().startswith(expected), done.stderr


def test_a_state_dir_that_is_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory")
    done = _groveflow("train", "events/train-digits.json", "--state-dir", str(occupied))
    assert done.returncode != 0
    assert done.stderr.strip() == f"groveflow: --state-dir {occupied} is a file; give a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert occupied.read_text() == "not a directory"


def test_a_truncated_manifest_is_named_with_its_file(tmp_path: Path) -> None:
    state = _trained_iris(tmp_path, "cut", 2)
    manifest = mirrored(state, keys.manifest("cut"))
    manifest.write_bytes(manifest.read_bytes()[:100])
    for command in (["report", "cut"], ["export", "cut", "--out", str(tmp_path / "m.joblib")]):
        done = _groveflow(*command, "--state-dir", str(state))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"groveflow: ArtifactError: {manifest} is not valid JSON")
        assert len(done.stderr.strip().splitlines()) == 1


def test_an_estimator_fits_on_a_served_stack(served_engine: Served) -> None:
    # GIVEN an engine that is a stack's endpoint (here groveflow serve), not this process
    from sklearn.datasets import load_iris

    from groveflow.engines import Stack
    from groveflow.estimators import GroveForestClassifier

    X, y = load_iris(return_X_y=True)
    engine = Stack(endpoint_url=served_engine.endpoint)
    # WHEN an estimator fits there
    model = GroveForestClassifier(n_trees=6, random_state=0, engine=engine).fit(X, y)
    # THEN the run was the stack's, its data went to the stack's datasets/, and the forest
    # downloaded from it predicts
    assert model.run_.execution_arn.startswith(TRAIN_ARN.replace(":stateMachine:", ":execution:"))
    assert model.run_.output["run_id"].startswith("fit-")
    assert model.score(X, y) > 0.9
    served_engine.assert_up()

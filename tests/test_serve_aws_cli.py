"""``groveflow serve`` driven by the real AWS CLI, as a console or script user drives a stack.

The AWS CLI (``.venv/bin/aws``) starts each example of events/ that runs as is, in the order
README.md lists them, with no ``--name``, the first as soon as the port opens; the server
answers a client that calls the moment its port opens, and rebinds its port at once after
being stopped during a run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import EVENTS, ROOT
from groveflow.local.template import read_template

BIN = Path(sys.executable).parent


AWS = BIN / "aws"
GROVEFLOW = BIN / "groveflow"
STACK = "groveflow"  # the state machines' name prefix under groveflow serve


def _machines() -> set[str]:
    """The state machines' logical ids in template.yaml."""
    resources = read_template(ROOT / "template.yaml")["Resources"]
    return {k for k, v in resources.items() if v["Type"] == "AWS::Serverless::StateMachine"}


def readme_examples() -> list[str]:
    """The events/ files README.md names where it lists the examples, in its order."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Examples in `events/`")
    paragraph = readme[start : readme.index("\n\n", start)]
    return list(dict.fromkeys(re.findall(r"`([\w-]+\.json)`", paragraph)))


def _runs_as_is(name: str) -> bool:
    """An example runs as is unless it holds a placeholder to replace (``YOUR-...``)."""
    return "YOUR-" not in (EVENTS / name).read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Serve:
    """A ``groveflow serve`` process and the AWS CLI pointed at it."""

    def __init__(self, port: int, state_dir: Path, tmp: Path) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.output = tmp / f"serve-{port}-{time.monotonic_ns()}.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        }
        with self.output.open("w") as out:
            command = [str(GROVEFLOW), "serve", "--port", str(port), "--workers", "2"]
            self.process = subprocess.Popen(
                [*command, "--state-dir", str(state_dir)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def wait_for_port(self) -> bool:
        """Wait until the port accepts a connection (True) or the process ends (False)."""
        while self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.005)
        return False

    def aws(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [AWS, "stepfunctions", *args, "--endpoint-url", self.endpoint, "--output", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr[-2000:])
        answer: dict[str, Any] = json.loads(done.stdout or "{}")
        return answer

    def aws_error(self, *args: str) -> str:
        """The AWS CLI's error line for a call the endpoint refuses (it must be refused)."""
        done = subprocess.run(
            [AWS, "stepfunctions", *args, "--endpoint-url", self.endpoint, "--output", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0, (args, done.stdout[-2000:])
        return done.stderr.strip()

    def machine_arn(self, logical_id: str) -> str:
        machines = self.aws("list-state-machines")["stateMachines"]
        (arn,) = [m["stateMachineArn"] for m in machines if m["name"] == f"{STACK}-{logical_id}"]
        return arn

    def wait_for_execution(self, execution_arn: str) -> dict[str, Any]:
        while True:
            described = self.aws("describe-execution", "--execution-arn", execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(2.0)

    def stop(self) -> str:
        """Ctrl-C the server; what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output.read_text()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Serve] = []

    def start(port: int, state_dir: Path | None = None) -> Serve:
        server = Serve(port, state_dir or tmp_path / "state", tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_a_client_calling_as_the_port_opens_finds_every_state_machine(
    serve_factory: Any,
) -> None:
    # GIVEN groveflow serve starting
    server = serve_factory(_free_port())
    # WHEN the AWS CLI lists the state machines the moment the port accepts a connection
    assert server.wait_for_port(), server.stop()
    listed = server.aws("list-state-machines")["stateMachines"]
    # THEN every state machine of the template is there
    assert {m["name"] for m in listed} == {f"{STACK}-{lid}" for lid in _machines()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """One groveflow serve for the examples, handed over the moment its port opens."""
    tmp = tmp_path_factory.mktemp("serve-examples")
    server = Serve(_free_port(), tmp / "state", tmp)
    try:
        assert server.wait_for_port(), server.stop()
        yield server
    finally:
        server.stop()


EXAMPLES = readme_examples()


def test_the_readme_lists_every_example_in_events() -> None:
    assert sorted(EXAMPLES) == sorted(p.name for p in EVENTS.glob("*.json"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_that_runs_as_is_succeeds_from_the_aws_cli_in_readme_order(
    served: Serve, example: str
) -> None:
    if not _runs_as_is(example):
        pytest.skip(f"events/{example} is a template: it names data to replace")
    event = json.loads((EVENTS / example).read_text())
    predicting = isinstance(event.get("model"), str)
    machine = "PredictStateMachine" if predicting else "TrainStateMachine"
    # WHEN the AWS CLI starts it as a console user would: the file as the input, no name
    started = served.aws(
        "start-execution",
        "--state-machine-arn",
        served.machine_arn(machine),
        "--input",
        f"file://{EVENTS / example}",
    )
    described = served.wait_for_execution(started["executionArn"])
    # THEN the execution succeeds
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))


def test_serve_answers_what_moto_lacks_as_aws_does(served: Serve, tmp_path: Path) -> None:
    # GIVEN an execution that ended on groveflow serve
    train = served.machine_arn("TrainStateMachine")
    small = json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 2})
    started = served.aws("start-execution", "--state-machine-arn", train, "--input", small)
    assert served.wait_for_execution(started["executionArn"])["status"] == "SUCCEEDED"
    arn = ["--execution-arn", started["executionArn"]]
    definition = (ROOT / "statemachine" / "train.asl.json").read_text()
    # WHEN the AWS CLI calls what moto does not implement, THEN each answers as AWS does
    assert served.aws("validate-state-machine-definition", "--definition", definition) == {
        "result": "OK",
        "diagnostics": [],
        "truncated": False,
    }
    assert served.aws("list-state-machine-versions", "--state-machine-arn", train) == {
        "stateMachineVersions": []
    }
    refused = served.aws_error("redrive-execution", *arn)
    assert "(ExecutionNotRedrivable)" in refused, refused
    # AND the history pages as asked, newest first when reversed
    every = served.aws("get-execution-history", *arn, "--no-paginate")["events"]
    page = served.aws("get-execution-history", *arn, "--max-items", "3", "--page-size", "3")
    assert [e["id"] for e in page["events"]] == [e["id"] for e in every[:3]]
    assert "NextToken" in page
    newest = served.aws("get-execution-history", *arn, "--reverse-order", "--no-paginate")
    assert [e["id"] for e in newest["events"]] == [e["id"] for e in reversed(every)]
    # AND an input over 262,144 bytes is refused at StartExecution
    big = tmp_path / "big.json"
    big.write_text(
        json.dumps({**json.loads((EVENTS / "train-digits.json").read_text()), "pad": "x" * 262_144})
    )
    refused = served.aws_error(
        "start-execution", "--state-machine-arn", train, "--input", f"file://{big}"
    )
    assert "(InvalidExecutionInput)" in refused, refused


# Many one-tree groves: a run still building groves when the server is stopped.
LONG_RUN = {"data": {"uri": "sklearn:digits"}, "n_trees": 400, "grove_size": 1}


def _started_and_building(server: Serve) -> str:
    """A LONG_RUN training started by the AWS CLI, once its groves are being built."""
    started = server.aws(
        "start-execution",
        "--state-machine-arn",
        server.machine_arn("TrainStateMachine"),
        "--input",
        json.dumps(LONG_RUN),
    )
    history = ["--execution-arn", started["executionArn"], "--reverse-order"]
    while not any(
        e["type"] == "MapRunStarted"
        for e in server.aws("get-execution-history", *history)["events"]
    ):
        time.sleep(0.5)  # until groves are built: workers hold connections to the port
    execution_arn: str = started["executionArn"]
    return execution_arn


def test_a_stopped_executions_map_run_is_aborted(served: Serve) -> None:
    # GIVEN a training building its groves
    execution_arn = _started_and_building(served)
    # WHEN the AWS CLI stops it
    served.aws("stop-execution", "--execution-arn", execution_arn)
    (map_run,) = served.aws("list-map-runs", "--execution-arn", execution_arn)["mapRuns"]
    described = served.aws("describe-map-run", "--map-run-arn", map_run["mapRunArn"])
    while described["status"] == "RUNNING":
        time.sleep(0.5)
        described = served.aws("describe-map-run", "--map-run-arn", map_run["mapRunArn"])
    # THEN its Map Run is ABORTED, the groves never started pending, none failed (as on AWS)
    assert described["status"] == "ABORTED", described
    counts = described["itemCounts"]
    assert (counts["failed"], counts["running"]) == (0, 0), counts
    assert counts["pending"] > 0 and counts["total"] == 400, counts


def test_serve_rebinds_its_port_at_once_after_a_stop_during_a_run(serve_factory: Any) -> None:
    # GIVEN groveflow serve building groves of a training started by the AWS CLI
    port = _free_port()
    first = serve_factory(port)
    assert first.wait_for_port(), first.stop()
    execution_arn = _started_and_building(first)
    status = first.aws("describe-execution", "--execution-arn", execution_arn)
    assert status["status"] == "RUNNING"
    # WHEN it is stopped (Ctrl-C) during the run and started again on the same port
    first.stop()
    second = serve_factory(port)
    # THEN the second serves on that port at once
    opened = second.wait_for_port()
    assert opened, second.stop()
    assert {m["name"] for m in second.aws("list-state-machines")["stateMachines"]}
    printed = second.stop()
    assert printed.startswith(f"groveflow local endpoint: http://127.0.0.1:{port}"), printed

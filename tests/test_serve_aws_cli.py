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


def _serve_holds_clients() -> bool:
    """Whether ``groveflow serve`` holds clients until its state machines exist and probes
    its port as the server binds it (local/commands.py calling server.py's helpers)."""
    import inspect

    from groveflow.local import commands

    source = inspect.getsource(commands.serve_forever)
    return "hold_clients" in source and "port_is_free" in source


NEEDS_SERVE_READINESS = pytest.mark.xfail(
    not _serve_holds_clients(),
    reason="local/commands.py does not yet call Server.hold_clients and port_is_free",
    strict=True,
)
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


@NEEDS_SERVE_READINESS
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


@pytest.mark.xfail(
    not _serve_holds_clients(),
    reason="local/commands.py does not yet hold clients until the state machines exist",
    strict=False,  # the first example meets no state machine, the later ones succeed
)
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


# Many one-tree groves: a run still building groves when the server is stopped.
LONG_RUN = {"data": {"uri": "sklearn:digits"}, "n_trees": 400, "grove_size": 1}


@NEEDS_SERVE_READINESS
def test_serve_rebinds_its_port_at_once_after_a_stop_during_a_run(serve_factory: Any) -> None:
    # GIVEN groveflow serve building groves of a training started by the AWS CLI
    port = _free_port()
    first = serve_factory(port)
    assert first.wait_for_port(), first.stop()
    arn = first.machine_arn("TrainStateMachine")
    started = first.aws(
        "start-execution", "--state-machine-arn", arn, "--input", json.dumps(LONG_RUN)
    )
    history = ["--execution-arn", started["executionArn"], "--reverse-order"]
    while not any(
        e["type"] == "MapRunStarted" for e in first.aws("get-execution-history", *history)["events"]
    ):
        time.sleep(0.5)  # until groves are built: workers hold connections to the port
    status = first.aws("describe-execution", "--execution-arn", started["executionArn"])
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

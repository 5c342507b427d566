"""Where a run executes: the embedded local engine, or a deployed stack.

Both run the same state machines and answer the same way: :meth:`Engine.execute` starts
an execution of ``TrainStateMachine`` or ``PredictStateMachine``, follows it to its end
and returns an :class:`Execution` (status, output, cost, seconds per stage).
:func:`groveflow.train` and :func:`groveflow.predict` take either; the CLI picks one
from its options with :func:`engine_for`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from groveflow.errors import GroveflowError
from groveflow.follow import Progress, execution_cost, follow, phase_seconds

__all__ = [
    "PREDICT",
    "TRAIN",
    "Engine",
    "EngineError",
    "Execution",
    "Local",
    "Stack",
    "StoppedFollowing",
    "default_engine",
    "engine_for",
]

TRAIN = "TrainStateMachine"
PREDICT = "PredictStateMachine"
MAP_CHILD_FUNCTIONS = ("BuildGroveFunction", "ScoreShardFunction")


class EngineError(GroveflowError):
    """The engine cannot run executions as asked (no such stack, no region, ...)."""


class StoppedFollowing(KeyboardInterrupt):
    """Ctrl-C while following an execution on a stack: the execution goes on.

    Attributes
    ----------
    execution_arn : str
        The execution still running, to follow again with ``groveflow follow``.
    """

    def __init__(self, execution_arn: str) -> None:
        super().__init__(execution_arn)
        self.execution_arn = execution_arn


@dataclass(frozen=True)
class Execution:
    """An ended execution, as an engine reports it.

    Parameters
    ----------
    execution_arn : str
    status : str
        ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``ABORTED``.
    output : dict
        The execution's output (empty if it failed).
    error, cause : str or None
        Its Error and Cause when it failed (a Lambda error document's message only).
    seconds : float
        Wall time from start to end, as this process saw it.
    phase_seconds : dict of str to float
        Seconds spent in each top-level state.
    cost : dict or None
        What it cost (or would cost) on AWS, see :class:`groveflow.cost.CostEstimate`.
    local_dir : Path or None
        The local engine's mirror of the run (or prediction) on disk.
    """

    execution_arn: str
    status: str
    output: dict[str, Any]
    error: str | None
    cause: str | None
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    local_dir: Path | None = None


class Engine(Protocol):
    """What :func:`groveflow.train` and :func:`groveflow.predict` need of an engine."""

    def execute(
        self,
        machine: str,
        request: dict[str, Any],
        *,
        run_id: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> Execution:
        """Run ``machine`` (:data:`TRAIN` or :data:`PREDICT`) on ``request`` to its end."""
        ...

    def data_uri(self, name: str, data: bytes) -> str:
        """Store a dataset file where this engine's runs can read it; its URI."""
        ...

    def model_path(self, model_uri: str) -> str:
        """Where :func:`groveflow.load_forest` can read the model at ``model_uri``."""
        ...


def readable_cause(cause: str | None) -> str | None:
    """A Lambda error document's message, without its stack trace."""
    try:
        document = json.loads(cause or "")
    except json.JSONDecodeError:
        return cause
    if isinstance(document, dict) and "errorMessage" in document:
        return str(document["errorMessage"])
    return cause


def execution_name(run_id: str) -> str:
    """A fresh execution name for a run: unique per start, accepted by Step Functions."""
    return f"{run_id[:60]}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}"


class Local:
    """The embedded local engine: the real state machines, on this machine.

    Started on first use and kept warm (workers with scikit-learn imported, the S3 and
    Step Functions server up) until :meth:`close`, so repeated calls, such as an
    estimator's fits in a cross-validation, pay the start once. Each run's objects are
    mirrored to ``state_dir`` as they are stored.

    Parameters
    ----------
    workers : int or None, default=None
        Worker processes (concurrent invocations); one per core if None.
    state_dir : str or Path, default=".groveflow"
        Where the local bucket is mirrored.
    faults : groveflow.local.faults.FaultInjector or None, default=None
        Faults to inject (tests and ``--inject-faults``).
    root : Path or None, default=None
        The SAM application to run (template.yaml, statemachine/, functions/); the
        working directory's, else the one installed with groveflow.
    parameters : dict or None, default=None
        The template's parameters to override, as ``sam deploy --parameter-overrides``
        does: ``{"BuilderMemorySize": 512}`` runs the builders with 512 MB, enforced.
    build_dir : str or Path or None, default=None
        Run the functions as built: ``sam build``'s output (``".aws-sam/build"``), each
        function on its runtime's Python (python3.12) with only its built code and layers
        on its path, as Lambda would run them, in place of this environment's groveflow,
        numpy, scikit-learn and boto3. It must be built for this machine's architecture;
        faults cannot be injected into it.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        state_dir: str | Path = ".groveflow",
        faults: Any = None,
        root: Path | None = None,
        parameters: dict[str, Any] | None = None,
        build_dir: str | Path | None = None,
    ) -> None:
        self.workers = workers
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.faults = faults
        self.root = root
        self.parameters = dict(parameters or {})
        self.build_dir = None if build_dir is None else Path(build_dir).expanduser().resolve()
        self._engine: Any = None

    def __repr__(self) -> str:
        """Its settings, those given other than the defaults (as scikit-learn shows an
        estimator's): an estimator holding it, and a test id made from one, carry no memory
        address."""
        default_state = Path(".groveflow").resolve()
        given = {
            "workers": self.workers,
            "state_dir": None if self.state_dir == default_state else str(self.state_dir),
            "faults": self.faults,
            "root": None if self.root is None else str(self.root),
            "parameters": self.parameters or None,
            "build_dir": None if self.build_dir is None else str(self.build_dir),
        }
        shown = ", ".join(f"{name}={value!r}" for name, value in given.items() if value is not None)
        return f"Local({shown})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Local:
        return self  # a handle on a running service, shared, as a client is

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its settings: an unpickled engine starts on first use."""
        return {**self.__dict__, "_engine": None}

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def engine(self) -> Any:
        """The running :class:`groveflow.local.LocalEngine`, started on first use."""
        if self._engine is None:
            if self.build_dir is None:
                start_workers()  # their scikit-learn import overlaps the engine's own start
            from groveflow.local import LocalEngine
            from groveflow.local.template import BuildError, ParameterError

            self.state_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._engine = LocalEngine(
                    self.root,
                    workers=self.workers,
                    state_dir=self.state_dir,
                    faults=self.faults,
                    parameters=self.parameters,
                    build_dir=self.build_dir,
                )
            except (ParameterError, BuildError) as error:  # a refused override, or build
                raise EngineError(str(error)) from None
        return self._engine

    def close(self) -> None:
        """Stop the workers; what is stored stays in ``state_dir``."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def model_path(self, model_uri: str) -> str:
        """The model's mirror on disk (``model_uri`` names it in the local bucket)."""
        from groveflow.local.engine import mirrored
        from groveflow.storage import parse_s3_uri

        _, key = parse_s3_uri(model_uri)
        return str(mirrored(self.state_dir, key).parent)

    def data_uri(self, name: str, data: bytes) -> str:
        """Store a dataset file where this engine's runs can read it; its URI."""
        path = self.state_dir / "datasets" / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{name}.{os.getpid()}.tmp")
            temp.write_bytes(data)
            os.replace(temp, path)
        return str(path)

    def execute(
        self,
        machine: str,
        request: dict[str, Any],
        *,
        run_id: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> Execution:
        """Run ``machine`` on ``request`` to its end, with the run's objects mirrored.

        While it runs, the state directory marks ``run_id`` as running in this process, so
        ``groveflow delete`` refuses it (:func:`groveflow.marks.running_mark`).
        """
        from groveflow.local.engine import execution_record
        from groveflow.marks import running_mark

        engine = self.engine
        predicting = machine == PREDICT
        if predicting:
            model_run = _model_run_id(request)
            if model_run is not None:
                engine.restore(model_run)  # a model trained by an earlier process
        with running_mark(self.state_dir, run_id):
            result = engine.run(
                machine,
                request,
                name=execution_name(run_id),
                run_id=run_id,
                on_progress=on_progress,
                on_start=on_start,
            )
        history = engine.history(result.execution_arn)
        cost = _local_cost(result, history, engine.s3)
        if result.status == "SUCCEEDED":
            ids = {"prediction_id": run_id} if predicting else {"run_id": run_id}
            _write_record(execution_record(engine.state_dir, **ids), result, cost)
        local_dir = engine.predictions_dir(run_id) if predicting else engine.run_dir(run_id)
        return Execution(
            execution_arn=result.execution_arn,
            status=result.status,
            output=result.output or {},
            error=result.error,
            cause=readable_cause(result.cause),
            seconds=result.seconds,
            phase_seconds=phase_seconds(history),
            cost=cost,
            local_dir=local_dir,
        )


class Stack:
    """A deployed groveflow stack (or a ``groveflow serve`` endpoint).

    Parameters
    ----------
    name : str or None, default=None
        The CloudFormation stack, whose outputs name its state machines.
    state_machine_arn : str or None, default=None
        The state machine to start instead (for either kind of run).
    region : str or None, default=None
        AWS region; the configured default if None.
    endpoint_url : str or None, default=None
        Another endpoint, e.g. a warm ``groveflow serve`` on this machine (its state
        machines are found by name, and no AWS configuration is needed).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        state_machine_arn: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.name = name
        self.state_machine_arn = state_machine_arn
        self.region = region
        self.endpoint_url = endpoint_url

    def __deepcopy__(self, memo: dict[int, Any]) -> Stack:
        return self

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` at this stack's region and endpoint."""
        import boto3

        session = boto3.session.Session(region_name=self.region)
        if _is_loopback(self.endpoint_url):
            # groveflow serve: any region and credentials will do, none need be configured.
            return session.client(  # type: ignore[call-overload]
                service,
                endpoint_url=self.endpoint_url,
                region_name=session.region_name or "us-east-1",
                aws_access_key_id="groveflow-local",
                aws_secret_access_key="groveflow-local",
            )
        if session.region_name is None:
            raise EngineError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
        return session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def arn_of(self, machine: str) -> str:
        """The ARN of the stack's ``TrainStateMachine`` or ``PredictStateMachine``."""
        if self.state_machine_arn:
            return self.state_machine_arn
        if not (self.name or self.endpoint_url):
            raise EngineError("name the stack, its state machine's ARN or an endpoint URL")
        if not self.name:  # an endpoint alone: its one state machine of that kind
            return self._served_state_machine(machine)
        stacks = self.client("cloudformation").describe_stacks(StackName=self.name)["Stacks"]
        for output in stacks[0].get("Outputs", []):
            if output["OutputKey"] == f"{machine}Arn":
                return str(output["OutputValue"])
        raise EngineError(f"stack {self.name} has no output {machine}Arn")

    def _served_state_machine(self, machine: str) -> str:
        pages = self.client("stepfunctions").get_paginator("list_state_machines").paginate()
        arns = [
            m["stateMachineArn"]
            for page in pages
            for m in page["stateMachines"]
            if m["name"].endswith(f"-{machine}")
        ]
        if len(arns) != 1:
            raise EngineError(
                f"{len(arns)} state machines named *-{machine} at {self.endpoint_url}; "
                "name one with --state-machine-arn" + (f": {', '.join(arns)}" if arns else "")
            )
        return str(arns[0])

    def bucket_name(self) -> str:
        """The stack's bucket (its ``ModelBucketName`` output; ``groveflow serve``'s own)."""
        if self.name:
            stacks = self.client("cloudformation").describe_stacks(StackName=self.name)["Stacks"]
            for output in stacks[0].get("Outputs", []):
                if output["OutputKey"] == "ModelBucketName":
                    return str(output["OutputValue"])
            raise EngineError(f"stack {self.name} has no output ModelBucketName")
        if _is_loopback(self.endpoint_url):
            from groveflow.local.engine import LOCAL_BUCKET

            return LOCAL_BUCKET
        raise EngineError("name the stack (--stack) to know its bucket")

    def data_uri(self, name: str, data: bytes) -> str:
        """Upload a dataset file under the bucket's ``datasets/`` (which Plan may read) once."""
        bucket, key = self.bucket_name(), f"datasets/groveflow-fit/{name}"
        s3 = self.client("s3")
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def model_path(self, model_uri: str) -> str:
        """The model's manifest and forest, downloaded with this stack's client to a new
        temporary directory (``load_forest`` verifies them there)."""
        import tempfile

        from groveflow.storage import parse_s3_uri

        bucket, key = parse_s3_uri(model_uri)
        prefix = key.rsplit("/", 1)[0]
        target = Path(tempfile.mkdtemp(prefix="groveflow-model-"))
        s3 = self.client("s3")
        manifest = s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
        (target / "manifest.json").write_bytes(manifest)
        parsed = json.loads(manifest)
        names = [parsed.get("forest", {}).get("key", "forest.gfa")]
        if isinstance(parsed.get("oob"), dict):  # the OOB decision function, beside the forest
            names.append(parsed["oob"]["decision"]["key"])
        for name in names:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
            (target / Path(name).name).write_bytes(body)
        return str(target)

    def start(self, machine: str, request: dict[str, Any], *, run_id: str) -> str:
        """Start an execution; its ARN."""
        sfn = self.client("stepfunctions")
        started = sfn.start_execution(
            stateMachineArn=self.arn_of(machine),
            name=execution_name(run_id),
            input=json.dumps(request),
        )
        return str(started["executionArn"])

    def wait(
        self, execution_arn: str, on_progress: Callable[[Progress], None] | None = None
    ) -> Execution:
        """Follow an execution to its end; Ctrl-C raises :class:`StoppedFollowing`."""
        started = time.monotonic()
        # A groveflow serve endpoint on this machine answers fast, but each look costs its
        # server a few milliseconds of the CPU the workers use.
        poll = 0.5 if _is_loopback(self.endpoint_url) else 2.0
        try:
            sfn = self.client("stepfunctions")
            description = follow(sfn, execution_arn, on_progress, poll_seconds=poll)
        except KeyboardInterrupt:
            raise StoppedFollowing(execution_arn) from None
        cost = execution_cost(
            sfn, self.client("lambda"), self.client("logs"), description, self.client("s3")
        )
        history = _history(sfn, execution_arn)
        return Execution(
            execution_arn=execution_arn,
            status=description["status"],
            output=json.loads(description.get("output") or "null") or {},
            error=description.get("error"),
            cause=readable_cause(description.get("cause")),
            seconds=time.monotonic() - started,
            phase_seconds=phase_seconds(history),
            cost=cost,
        )

    def execute(
        self,
        machine: str,
        request: dict[str, Any],
        *,
        run_id: str,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> Execution:
        """Start ``machine`` on ``request`` and follow it to its end."""
        arn = self.start(machine, request, run_id=run_id)
        if on_start is not None:
            on_start(arn)
        return self.wait(arn, on_progress)


def start_workers() -> None:
    """Start the local workers' fork server now, with Ctrl-C ignored while it starts.

    The fork server and every worker it forks then ignore the SIGINT a terminal sends
    the whole process group (or a notebook its kernel): the caller alone stops, closes
    the pool and says what to do, with no traceback from each worker.
    """
    import signal
    import threading

    from groveflow.local.workers import start_fork_server

    if threading.current_thread() is not threading.main_thread():
        start_fork_server()  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start_fork_server()
    finally:
        signal.signal(signal.SIGINT, previous)


def engine_for(
    *,
    stack: str | None = None,
    state_machine_arn: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    workers: int | None = None,
    state_dir: str | Path = ".groveflow",
    faults: Any = None,
    parameters: dict[str, Any] | None = None,
    build_dir: str | Path | None = None,
) -> Local | Stack:
    """The engine these options name, chosen one way for every call (and the CLI).

    A stack name, a state machine ARN or an endpoint URL names a :class:`Stack`;
    otherwise the embedded :class:`Local` engine, with ``workers``, ``state_dir``,
    ``faults``, template ``parameters`` and ``build_dir`` (which a stack refuses: they are
    the local engine's; a stack's parameters are set by ``sam deploy``, and it runs what
    was deployed).
    """
    if stack or state_machine_arn or endpoint_url:
        if faults is not None:
            raise EngineError("injected faults are the local engine's; a stack takes none")
        if parameters:
            raise EngineError(
                "parameter overrides are the local engine's; a stack's are set by "
                "`sam deploy --parameter-overrides`"
            )
        if build_dir is not None:
            raise EngineError(
                "a build directory is the local engine's; a stack runs what `sam deploy` "
                "deployed from it"
            )
        return Stack(
            stack, state_machine_arn=state_machine_arn, region=region, endpoint_url=endpoint_url
        )
    return Local(
        workers=workers,
        state_dir=state_dir,
        faults=faults,
        parameters=parameters,
        build_dir=build_dir,
    )


_DEFAULT: list[Local] = []


def default_engine() -> Local:
    """The process's embedded local engine (state in ``.groveflow``), shared by every call."""
    if not _DEFAULT:
        _DEFAULT.append(Local())
    return _DEFAULT[0]


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    from groveflow.follow import history

    return history(sfn, execution_arn)


def _is_loopback(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return False
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def _model_run_id(request: dict[str, Any]) -> str | None:
    """The local run a prediction input's ``model`` names (a run id or its S3 URI), if any."""
    from groveflow.layout import run_of_model

    model = request.get("model")
    return run_of_model(model) if isinstance(model, str) else None


def _local_cost(result: Any, history: list[dict[str, Any]], s3: Any = None) -> dict[str, Any]:
    """A local run's cost as a stack deployed with template.yaml's defaults would bill it:
    its invocations at the template's architecture and Ingest's ephemeral storage, its
    transitions, its S3 requests counted as the estimate counts them (with the run's stored
    estimate read through ``s3``, the engine's client, when given), and its logs at the
    estimate's bytes an invocation (the engine writes every run's handler lines to one file,
    and Lambda's own START, END and REPORT lines are not written)."""
    from groveflow.cost import child_transitions, count_state_transitions, estimate_cost
    from groveflow.estimates import (
        ARCHITECTURE,
        INGEST_STORAGE_MB,
        LOG_BYTES_PER_INVOCATION,
        run_s3_requests,
    )
    from groveflow.follow import run_estimate

    children = [i for i in result.invocations if i.function in MAP_CHILD_FUNCTIONS]
    items = {(i.function, json.dumps(i.payload, sort_keys=True)) for i in children}
    transitions = count_state_transitions(history, child_transitions(len(items), len(children)))
    model_uri = (result.output or {}).get("model_uri") if isinstance(result.output, dict) else None
    reads, writes = run_s3_requests(run_estimate(s3, model_uri), result.invocations)
    return estimate_cost(
        result.invocations,
        transitions,
        architecture=ARCHITECTURE,
        s3_read_requests=reads,
        s3_write_requests=writes,
        log_bytes=len(result.invocations) * LOG_BYTES_PER_INVOCATION,
        ephemeral_mb={"IngestFunction": INGEST_STORAGE_MB},
    ).to_dict()


def _write_record(path: Path, result: Any, cost: dict[str, Any]) -> None:
    """Keep a succeeded run's invocations and cost beside the mirror, for ``groveflow report``.

    Only a run that succeeded writes it: a run refused at Plan (say, its id belongs to
    another run) must not replace the record of the run that owns the id.
    """
    from groveflow.jsonsafe import json_safe

    invocations = [
        {
            "function": i.function,
            "duration_ms": i.duration_ms,
            "memory_mb": i.memory_mb,
            "init_ms": i.init_ms,
        }
        for i in result.invocations
    ]
    record = {"execution_arn": result.execution_arn, "invocations": invocations, "cost": cost}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(json_safe(record), indent=2, allow_nan=False))
    os.replace(temp, path)

"""The embedded local engine: the real state machines, run on this machine.

moto's Step Functions interpreter executes the unmodified ASL files from
template.yaml, moto's S3 is served on 127.0.0.1 so the interpreter and the
worker processes share one bucket, and every Lambda invoke the interpreter
makes is intercepted (botocore's ``before-call.lambda.Invoke`` event) and run
by the handler template.yaml names, in a :class:`~groveflow.local.workers.WorkerPool`.

:class:`LocalEngine` is a facade over parts with one job each: the endpoint
(:mod:`~groveflow.local.server`), the Lambda service with its faults and REPORT lines
(:mod:`~groveflow.local.lambda_service`), the state directory's mirror
(:mod:`~groveflow.local.mirror`) and the follower (:mod:`groveflow.follow`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from groveflow.follow import Progress, follow, history
from groveflow.ids import check_id, is_valid_id
from groveflow.layout import keys
from groveflow.local import moto_compat
from groveflow.local.faults import FaultInjector
from groveflow.local.lambda_service import Invocation, LambdaService
from groveflow.local.mirror import Mirror
from groveflow.local.server import CREDENTIALS, Server
from groveflow.local.template import REGION, BuildError, Stack, load_build, load_template
from groveflow.local.workers import (
    HANDLER_PRELOAD,
    Outcome,
    WorkerPool,
    default_size,
    runtime_python,
)

__all__ = ["ExecutionResult", "Invocation", "LocalEngine", "mirrored", "project_root"]

LOCAL_BUCKET = "groveflow-local"
_SETTLE_SECONDS = 0.02  # after an invocation ends, for the interpreter to record it
_MIN_POLL_SECONDS = 0.1
_UNANNOUNCED_END_SECONDS = 1.0  # a follower with no progress to show looks this often too


def mirrored(state_dir: Path, key: str) -> Path:
    """Where the local bucket's object (or prefix) ``key`` is mirrored under ``state_dir``."""
    return state_dir / "s3" / LOCAL_BUCKET / key


def execution_record(
    state_dir: Path, *, run_id: str | None = None, prediction_id: str | None = None
) -> Path:
    """Where the local engine keeps a run's (or prediction's) invocations and cost.

    Beside the bucket's mirror, not in it: a record is this machine's, not an object.
    """
    if run_id is not None:
        return state_dir / "executions" / "runs" / f"{check_id(run_id)}.json"
    assert prediction_id is not None
    name = check_id(prediction_id, name="prediction_id")
    return state_dir / "executions" / "predictions" / f"{name}.json"


def _is_training_split(key: str) -> bool:
    """The training split is large and rebuilt from the data on resume: not mirrored. A split
    in row shards is not mirrored at all (its document neither), so a resume rewrites it."""
    if not key.startswith("runs/"):
        return False
    split = key.endswith(
        ("/data/X_train.npy", "/data/y_train.npy", "/data/w_train.npy", "/data/train_codes.npy")
    )
    return (
        split or "/data/train/" in key or "/data/test/" in key or key.endswith("/data/shards.json")
    )


_NO_FAULTS_AS_BUILT = (
    "faults cannot be injected into functions run as built: the injector wraps each handler "
    "with this venv's groveflow.local, which a build does not hold; inject them without "
    "build_dir"
)


def _runtime_python(stack: Stack) -> str:
    """The interpreter of the runtime every function of a build runs on."""
    runtimes = sorted({spec.runtime for spec in stack.functions.values()})
    if len(runtimes) != 1:
        raise BuildError(f"the build's functions run on several runtimes {runtimes}: one only")
    python = runtime_python(runtimes[0])
    if python is None:
        version = runtimes[0].removeprefix("python")
        raise BuildError(
            f"the build's functions run on {runtimes[0]}, which is not on this machine: "
            f"install it (e.g. `pyenv install {version}`), or name its interpreter in "
            f"PYTHON{version.replace('.', '')}"
        )
    return python


def project_root() -> Path:
    """The SAM application to run: the working directory's (or a parent's) template.yaml,
    else the one installed with groveflow (see :func:`groveflow.application.application_root`)."""
    from groveflow.application import application_root

    return application_root()


@dataclass
class ExecutionResult:
    """How an execution ended.

    Parameters
    ----------
    execution_arn : str
    status : str
        ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``ABORTED``.
    output : dict or None
    error, cause : str or None
        The execution's Error and Cause when it failed.
    seconds : float
        Wall time from start to end.
    """

    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    seconds: float
    invocations: list[Invocation] = field(default_factory=list)


class LocalEngine:
    """Runs the project's state machines locally.

    Parameters
    ----------
    root : Path or None, default=None
        The project directory holding template.yaml; found from the working directory if None.
    workers : int or None, default=None
        Worker processes (concurrent invocations); one per core if None.
    state_dir : Path, default=Path(".groveflow")
        Where the local bucket is mirrored to disk after each run.
    on_invoke : callable or None, default=None
        Called with each :class:`Invocation` as it ends (progress display).
    faults : FaultInjector or None, default=None
        Throttles, crashes and timeouts to inject (see :mod:`groveflow.local.faults`).
    stack_name : str or None, default=None
        Names the functions (``<stack>-<LogicalId>``) and state machines; unique if None.
    port : int or None, default=None
        Loopback port of the S3 and Step Functions endpoint; a free one if None.
    serve : bool, default=False
        Mirror every run and prediction any client starts (``groveflow serve``), after
        restoring every run already in ``state_dir``; otherwise only what :meth:`run` runs.
    parameters : dict or None, default=None
        The template's parameters to override, as ``sam deploy --parameter-overrides``.
    build_dir : Path or None, default=None
        Run the functions as built: a ``sam build`` output (``.aws-sam/build``), whose
        template, function code and layers replace ``root``'s, each function on its
        runtime's interpreter (``python3.12``) with nothing else on its ``sys.path`` (see
        :class:`~groveflow.local.workers.WorkerPool`'s ``python``). It must be built for
        this machine's architecture. Faults cannot be injected into it (the injector wraps
        the handler with this venv's groveflow, which a build does not hold).

    Raises
    ------
    BuildError
        If ``build_dir`` cannot run as built here (see :func:`load_build`), its runtime's
        interpreter is not on this machine, or faults are asked for with it.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        workers: int | None = None,
        state_dir: Path = Path(".groveflow"),
        on_invoke: Callable[[Invocation], None] | None = None,
        faults: FaultInjector | None = None,
        stack_name: str | None = None,
        port: int | None = None,
        serve: bool = False,
        parameters: dict[str, Any] | None = None,
        build_dir: Path | None = None,
    ) -> None:
        self.build_dir = build_dir.resolve() if build_dir is not None else None
        self.root = self.build_dir or (root or project_root()).resolve()
        self.endpoint = Server.endpoint(port)
        self.bucket = LOCAL_BUCKET
        self.state_dir = state_dir.resolve()
        self.stack_name = stack_name or f"groveflow-{uuid.uuid4().hex[:8]}"
        load = load_template if self.build_dir is None else load_build
        self.stack: Stack = load(
            self.root, bucket=self.bucket, stack_name=self.stack_name, parameters=parameters
        )
        if self.build_dir is not None and faults is not None:
            raise BuildError(_NO_FAULTS_AS_BUILT)
        self._lock = threading.Lock()
        self._reported: set[str] = set()  # ended executions already returned by ended_runs
        self.mirror = Mirror(
            self.state_dir, LOCAL_BUCKET, everything=serve, skip=_is_training_split
        )
        self.log_path = self.state_dir / "logs" / f"{self.stack_name}.log"
        # Workers start in the background (the fork server imports scikit-learn) meanwhile.
        self.pool = self._worker_pool(workers or default_size())
        self.lambdas = LambdaService(self.stack, self.pool, faults=faults, on_invoke=on_invoke)
        Server.start()
        # A Distributed Map Run's children beyond what the workers can serve only wait:
        # one thread for a child on each worker and one ready for each (the process's
        # setting: the last engine made sets it).
        moto_compat.set_map_child_threads(2 * (workers or default_size()))
        self._connect()
        if serve:
            self.mirror.restore("")  # runs trained earlier: resumable, scorable, guarded
        self._machines: dict[str, str] = {}  # created on first use: each parse costs 0.1 s
        self.lambdas.open()

    def _worker_pool(self, size: int) -> WorkerPool:
        """The workers, with the environment a function sees on Lambda pointed here."""
        python = None if self.build_dir is None else _runtime_python(self.stack)
        environment = {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,  # nothing a handler does can reach real AWS
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "GROVEFLOW_LOCAL_ENGINE": "1",
        }
        return WorkerPool(
            size,
            environment,
            preload=HANDLER_PRELOAD if python is None else (),
            log_path=self.log_path,
            python=python,
            endpoint=Server.answer,  # development workers' S3 requests, through their pipes
        )

    def _connect(self) -> None:
        """The engine's own clients of the endpoint, its bucket, and its mirror opened."""
        session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        config = Config(retries={"max_attempts": 2})
        self.s3 = session.client("s3", endpoint_url=self.endpoint, config=config)
        self.sfn = session.client("stepfunctions", endpoint_url=self.endpoint, config=config)
        self.s3.create_bucket(Bucket=self.bucket)
        self.mirror.open()
        self.logs = session.client("logs", endpoint_url=self.endpoint, config=config)

    @property
    def faults(self) -> FaultInjector | None:
        """The faults injected into invocations (settable while the engine runs)."""
        return self.lambdas.faults

    @faults.setter
    def faults(self, injector: FaultInjector | None) -> None:
        if injector is not None and self.pool.as_built:
            raise BuildError(_NO_FAULTS_AS_BUILT)
        self.lambdas.faults = injector

    @property
    def invocations(self) -> list[Invocation]:
        """Every invocation the engine served, in the order they ended."""
        return self.lambdas.invocations

    @property
    def on_invoke(self) -> Callable[[Invocation], None] | None:
        """Called with each :class:`Invocation` as it ends."""
        return self.lambdas.on_invoke

    @on_invoke.setter
    def on_invoke(self, callback: Callable[[Invocation], None] | None) -> None:
        self.lambdas.on_invoke = callback

    def close(self) -> None:
        """Stop the workers (the shared S3 server keeps the bucket for this process)."""
        self.lambdas.close()
        self.mirror.close()
        self.pool.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def invoke(self, logical_id: str, payload: bytes) -> Outcome:
        """Run one invocation of a template function on the worker pool."""
        return self.lambdas.invoke(logical_id, payload)

    def wait_for_activity(self, seconds: float) -> None:
        """Wait up to ``seconds`` for an invocation to end, then a moment for the
        interpreter to record it (an execution may have ended with it)."""
        if self.lambdas.activity.wait(seconds):
            self.lambdas.activity.clear()
            time.sleep(_MIN_POLL_SECONDS)

    def ended_runs(self) -> list[tuple[str, str | None]]:
        """Executions that ended since the last call: ``(execution_arn, run or prediction id)``.

        For ``groveflow serve``, whose mirror has already written every object these
        runs stored. The id is the input's ``run_id`` or ``prediction_id``, else the
        execution's name, as the plan functions decide; None if no accepted id.
        """
        ended = []
        for arn in list(self._machines.values()):
            pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
            for execution in (item for page in pages for item in page["executions"]):
                execution_arn = execution["executionArn"]
                if execution["status"] == "RUNNING" or execution_arn in self._reported:
                    continue
                self._reported.add(execution_arn)
                ended.append((execution_arn, self._run_id_of(execution_arn, execution["name"])))
        return ended

    def _run_id_of(self, execution_arn: str, name: str) -> str | None:
        raw = self.sfn.describe_execution(executionArn=execution_arn).get("input") or "{}"
        try:
            execution_input = json.loads(raw)
        except ValueError:
            execution_input = None
        given = None
        if isinstance(execution_input, dict):
            given = execution_input.get("run_id") or execution_input.get("prediction_id")
        run_id = given if isinstance(given, str) else name
        return run_id if is_valid_id(run_id) else None

    def _pause(self, seconds: float, ended: threading.Event) -> None:
        """Wait up to ``seconds`` between polls, cut short after an invocation ends, and
        at once when the execution has ended (``ended``, set by the interpreter).

        The execution may have ended with that invocation, so the follower looks again
        once the interpreter has had a moment to record it, but at most ten times a second.
        """
        began = time.monotonic()
        if ended.is_set():
            return
        if self.lambdas.ended.wait(seconds):
            self.lambdas.ended.clear()
            now = time.monotonic()
            look = max(now + _SETTLE_SECONDS, began + _MIN_POLL_SECONDS)
            ended.wait(max(0.0, min(look, began + seconds) - now))

    def state_machine_arn(self, logical_id: str) -> str:
        """The local ARN of a template state machine (``TrainStateMachine``...), created
        on first use."""
        with self._lock:
            if logical_id not in self._machines:
                spec = self.stack.state_machines[logical_id]
                self._machines[logical_id] = self.sfn.create_state_machine(
                    name=f"{self.stack_name}-{logical_id}",
                    definition=spec.definition(),
                    roleArn="arn:aws:iam::123456789012:role/groveflow-local",
                )["stateMachineArn"]
            return self._machines[logical_id]

    def run(
        self,
        state_machine: str,
        execution_input: dict[str, Any],
        *,
        name: str,
        run_id: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Start an execution and wait for it to end; its objects are mirrored as stored.

        Parameters
        ----------
        state_machine : str
            Logical id in template.yaml, e.g. ``TrainStateMachine``.
        execution_input : dict
        name : str
            Execution name; unique per state machine (moto misbehaves without one).
        run_id : str or None
            The run (for ``PredictStateMachine``, the prediction) whose objects are
            restored from, and mirrored to, ``state_dir``; the input's ``run_id`` (or
            ``prediction_id``), else ``name``, if None.
        on_progress : callable or None
            Called with each :class:`~groveflow.follow.Progress` while the execution runs.
        on_start : callable or None
            Called with the execution's ARN once it has started.

        Raises
        ------
        InvalidRequest
            If the run id is not accepted (see :mod:`groveflow.ids`); nothing is written.
        """
        self._take(state_machine, execution_input, run_id, name)
        first = len(self.invocations)
        started = time.monotonic()
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn(state_machine),
            name=name,
            input=json.dumps(execution_input),
        )["executionArn"]
        description = self._follow(arn, on_progress, on_start)
        output = description.get("output")
        return ExecutionResult(
            execution_arn=arn,
            status=description["status"],
            output=json.loads(output) if output else None,
            error=description.get("error"),
            cause=description.get("cause"),
            seconds=time.monotonic() - started,
            invocations=self.invocations[first:],
        )

    def _take(
        self, state_machine: str, execution_input: dict[str, Any], run_id: str | None, name: str
    ) -> str:
        """The id of the run (or prediction) an execution named ``name`` is about to run:
        ``run_id``, else the input's, else ``name``. The mirror takes its prefix, and what
        an earlier process mirrored of it is restored."""
        predicting = state_machine == "PredictStateMachine"
        id_key = "prediction_id" if predicting else "run_id"
        given = execution_input.get(id_key) if isinstance(execution_input, dict) else None
        run_id = check_id(run_id or given or name, name=id_key)
        self.mirror.take(keys.predictions_prefix(run_id))
        if predicting:
            self.mirror.restore(keys.predictions_prefix(run_id))
        else:
            self.mirror.take(keys.run_prefix(run_id))
            self.restore(run_id)
        return run_id

    def _follow(
        self,
        arn: str,
        on_progress: Callable[[Progress], None] | None,
        on_start: Callable[[str], None] | None,
    ) -> dict[str, Any]:
        """Wait for a started execution to end, showing its progress; its description."""
        # Registered before the first look: an end before it is seen by that look.
        ended = threading.Event()

        def wake() -> None:
            ended.set()
            self.lambdas.ended.set()

        cancel = moto_compat.when_execution_ends(arn, wake)
        if on_start is not None:
            on_start(arn)
        # Each look costs this process's server a few milliseconds of the CPU the workers
        # use, so the follower looks once a second, soon after each invocation ends (the
        # progress bar moves when an item does), and as soon as the execution ends.
        self.lambdas.ended.clear()
        try:
            if on_progress is None:  # nothing to show meanwhile: one look, once it ended
                while not ended.wait(_UNANNOUNCED_END_SECONDS):
                    status = self.sfn.describe_execution(executionArn=arn)["status"]
                    if status != "RUNNING":
                        break
            return follow(
                self.sfn,
                arn,
                on_progress,
                poll_seconds=1.0,
                wait=lambda seconds: self._pause(seconds, ended),
            )
        finally:
            cancel()

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every event of an execution's history, oldest first."""
        return history(self.sfn, execution_arn)

    def run_dir(self, run_id: str) -> Path:
        """Where a run's objects are mirrored on disk."""
        return mirrored(self.state_dir, keys.run_prefix(check_id(run_id)))

    def predictions_dir(self, prediction_id: str) -> Path:
        """Where a prediction run's parts and manifest are mirrored on disk."""
        prefix = keys.predictions_prefix(check_id(prediction_id, name="prediction_id"))
        return mirrored(self.state_dir, prefix)

    def restore(self, run_id: str) -> None:
        """Load a run mirrored by an earlier process back into the local bucket (resume)."""
        self.mirror.restore(keys.run_prefix(check_id(run_id)))

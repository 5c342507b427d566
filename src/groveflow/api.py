"""The public API: train a forest, score rows with it, on any engine.

::

    import groveflow

    run = groveflow.train({"data": {"uri": "sklearn:digits"}, "n_trees": 100})
    run.metrics["accuracy"]             # 0.97
    forest = run.load_forest()          # predicts exactly as scikit-learn does
    scored = groveflow.predict({"model": run.run_id, "data": {"uri": "rows.csv"}})

Both run the real state machines: on the embedded local engine by default
(:func:`groveflow.engines.default_engine`), or on a deployed stack
(``engine=groveflow.Stack("my-stack")``). The ``groveflow`` command is a thin layer of
options over these calls.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groveflow.constraints import Interval, check_value
from groveflow.engines import PREDICT, TRAIN, Engine, Execution, default_engine
from groveflow.errors import (
    DatasetTooLarge,
    GroveflowError,
    InvalidPredictRequest,
    InvalidRequest,
)
from groveflow.follow import Progress
from groveflow.ids import check_id, default_id
from groveflow.layout import keys

if TYPE_CHECKING:
    from groveflow.estimates import EstimateCheck, RunEstimate

__all__ = [
    "RunFailed",
    "RunResult",
    "SearchCandidate",
    "SearchResult",
    "StageMemory",
    "estimate",
    "predict",
    "search",
    "stage_memory",
    "train",
]


class RunFailed(GroveflowError):
    """A run ended without success; ``error`` is the state machine's Error name.

    Attributes
    ----------
    result : RunResult
    error, cause : str or None
        The result's ``error`` and ``cause``.
    """

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"{result.error}: {result.cause}")
        self.result = result

    def __reduce__(self) -> tuple[type[RunFailed], tuple[RunResult]]:
        """Pickled as its result, so a process pool hands the caller this error (an
        exception is otherwise rebuilt from its message, which is not a result)."""
        return type(self), (self.result,)

    @property
    def error(self) -> str | None:
        """The state machine's Error name (``InvalidDataset``, ``States.Timeout``...)."""
        return self.result.error

    @property
    def cause(self) -> str | None:
        """The error's message."""
        return self.result.cause


@dataclass(frozen=True)
class StageMemory:
    """One stage's memory in a run: what its function used against what it is given.

    Parameters
    ----------
    stage : str
        The state machine's state (``Plan``, ``BuildGroves``, ``Merge``...); a Map's
        children count as the Map's stage.
    function : str
        The template function that runs it (``PlanFunction``...).
    memory_mb : int
        Its configured ``MemorySize`` (in MB).
    max_memory_used_mb : int or None
        The highest ``Max Memory Used`` (in MB) of its invocations; None where not
        measured.
    invocations : int
        Its invocations, retries included.
    out_of_memory : int
        Invocations that failed with ``Runtime.OutOfMemory``.
    estimate_mb : int or None, default=None
        For the grove builders, the plan's size-guard estimate (in MB) of one builder's
        peak, which the plan refuses a run over ``memory_mb`` with; None elsewhere.
    """

    stage: str
    function: str
    memory_mb: int
    max_memory_used_mb: int | None
    invocations: int
    out_of_memory: int
    estimate_mb: int | None = None

    @property
    def used_fraction(self) -> float | None:
        """``max_memory_used_mb / memory_mb``; above 1 the stage ran out of memory."""
        if self.max_memory_used_mb is None:
            return None
        return self.max_memory_used_mb / self.memory_mb


@dataclass(frozen=True)
class RunResult:
    """What a training or prediction run gave.

    Parameters
    ----------
    kind : {"train", "predict"}
    status : str
        ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``ABORTED``.
    run_id : str
        The run id (for a prediction, the prediction id).
    execution_arn : str
    seconds : float
        Wall time, start to end.
    phase_seconds : dict of str to float
        Seconds in each stage (``Plan``, ``BuildGroves``, ``Merge``...).
    cost : dict or None
        What the run costs (or would cost) on AWS: ``total_usd``, ``gb_seconds``,
        ``lambda_requests``, ``state_transitions``...
    metrics : dict or None
        Holdout metrics (training).
    oob : dict or None
        Out-of-bag metrics (training with ``model.params.oob_score``): ``oob_score`` (as
        scikit-learn's), the metrics over the rows some tree left out, ``n_rows_without_oob``.
    trees_requested, trees_built, groves_built : int or None
        The forest (training).
    model_uri : str or None
        ``s3://<bucket>/runs/<run_id>/model/manifest.json`` (training).
    predictions : dict or None
        Where a training run's predict section, or a prediction run, wrote its scores.
    local_dir : Path or None
        On the local engine, the run's (or prediction's) mirror on disk.
    error, cause : str or None
        The named error and its message, when the run failed.
    output : dict
        The execution's whole output.
    memory : dict of str to StageMemory
        Each stage's peak memory against its configured memory, by stage, in the order
        the stages ran (see :func:`stage_memory`); empty if the engine reported none.
    estimate : EstimateCheck or None
        The plan's estimate (:mod:`groveflow.estimates`) beside what the run measured: the
        AWS cost estimate against the cost from its ``REPORT`` lines and, on the local
        engine, the local-wall estimate against the measured wall; None where the run
        record is not on this machine (a stack) or the plan made none.
    groves_reused : int or None
        Training: the groves that an earlier execution of the run stored and this one kept
        instead of fitting again (a rerun, a resumed or grown run), seen in the local
        engine's mirror or the stack's bucket; None where the bucket is not known (a state
        machine given by ARN alone) or cannot be listed.
    """

    kind: str
    status: str
    run_id: str
    execution_arn: str
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    oob: dict[str, Any] | None = None
    trees_requested: int | None = None
    trees_built: int | None = None
    groves_built: int | None = None
    model_uri: str | None = None
    predictions: dict[str, Any] | None = None
    local_dir: Path | None = None
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, StageMemory] = field(default_factory=dict)
    estimate: EstimateCheck | None = None
    groves_reused: int | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status == "SUCCEEDED"

    @property
    def model_dir(self) -> Path | None:
        """On the local engine, the directory holding the model and its ``manifest.json``."""
        if self.kind != "train" or self.local_dir is None:
            return None
        return self.local_dir / "model"

    def raise_for_status(self) -> RunResult:
        """This result if it succeeded; else :class:`RunFailed` naming the error."""
        if not self.succeeded:
            raise RunFailed(self)
        return self

    def load_forest(self) -> Any:
        """The trained forest (:class:`groveflow.artifact.Forest`), validated."""
        from groveflow.artifact import load_forest

        self.raise_for_status()
        if self.kind != "train":
            raise InvalidRequest("a prediction run has no forest of its own; load its model")
        location = str(self.model_dir) if self.model_dir is not None else self.model_uri
        assert location is not None
        return load_forest(location)


def train(
    request: Mapping[str, Any] | str | Path,
    *,
    engine: Engine | None = None,
    run_id: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Train a forest: run the training state machine on ``request``.

    Parameters
    ----------
    request : dict, or str or Path of a JSON file
        The execution input (see docs/input.md's table, or ``events/``).
    engine : Engine or None, default=None
        Where to run; the process's embedded local engine if None.
    run_id : str or None, default=None
        Names the run; the request's ``run_id``, else one made from the file name (or
        ``run``) and the time. The same id and input again resumes the run.
    on_progress : callable or None, default=None
        Called with each :class:`~groveflow.follow.Progress` while the run goes on.
    on_start : callable or None, default=None
        Called with the execution's ARN once it has started.

    Returns
    -------
    RunResult
        Whether it succeeded (see :meth:`RunResult.raise_for_status`), its metrics, where
        the model is, its cost and the seconds per stage.

    Raises
    ------
    InvalidRequest
        If the run id is not accepted; nothing is written. (A request the plan refuses
        gives a failed :class:`RunResult` naming the error.)
    """
    return _execute(False, request, engine, run_id, (on_progress, on_start))


def predict(
    request: Mapping[str, Any] | str | Path,
    *,
    engine: Engine | None = None,
    run_id: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Score rows with a trained model: run the predict state machine on ``request``.

    Parameters
    ----------
    request : dict, or str or Path of a JSON file
        ``{"model": <run id or s3://.../manifest.json>, "data": {"uri": ...}, ...}``.
    engine : Engine or None, default=None
        Where to run; the process's embedded local engine if None.
    run_id : str or None, default=None
        The prediction id, naming ``predictions/<id>/``; the request's ``prediction_id``,
        else one made from the file name (or ``run``) and the time.
    on_progress, on_start : callable or None, default=None
        As for :func:`train`.

    Returns
    -------
    RunResult
        ``predictions`` says where the parts and their manifest are.
    """
    return _execute(True, request, engine, run_id, (on_progress, on_start))


def _execute(
    predicting: bool,
    request: Mapping[str, Any] | str | Path,
    engine: Engine | None,
    run_id: str | None,
    callbacks: tuple[Callable[[Progress], None] | None, Callable[[str], None] | None],
) -> RunResult:
    body, stem = _read(request, InvalidPredictRequest if predicting else InvalidRequest)
    run_id = id_for(body, stem, run_id, predicting=predicting)
    body["prediction_id" if predicting else "run_id"] = run_id
    on_progress, on_start = callbacks
    engine = engine or default_engine()
    workers, cold_engine = _local_workers(engine)
    groves = None if predicting else _stored_groves(engine, run_id)
    execution = engine.execute(
        PREDICT if predicting else TRAIN,
        body,
        run_id=run_id,
        on_progress=on_progress,
        on_start=on_start,
    )
    kind = "predict" if predicting else "train"
    result = result_of(kind, run_id, execution, workers=workers, cold_engine=cold_engine)
    after = None if groves is None else _stored_groves(engine, run_id)
    if groves is None or after is None:
        return result
    return replace(result, groves_reused=_kept(groves, after))


def _stored_groves(engine: Engine, run_id: str) -> dict[str, tuple[Any, ...]] | None:
    """The run's stored groves, each with what changes when it is written again: on the
    local engine the mirror's files (modification time in ns, size), on a stack the
    bucket's objects (LastModified, ETag). None where they cannot be seen: a state machine
    given by ARN alone (no bucket known), or no permission to list the bucket."""
    from groveflow.engines import EngineError, Local, Stack
    from groveflow.local.engine import mirrored

    prefix = keys.groves_prefix(run_id)
    if isinstance(engine, Local):
        folder = mirrored(Path(engine.state_dir), prefix)
        stored: dict[str, tuple[Any, ...]] = {}
        for grove in sorted(folder.glob("grove-*.gfa")) if folder.is_dir() else []:
            stat = grove.stat()
            stored[grove.name] = (stat.st_mtime_ns, stat.st_size)
        return stored
    if not isinstance(engine, Stack):
        return None
    try:
        bucket, s3 = engine.bucket_name(), engine.client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {
            item["Key"]: (item["LastModified"], item["ETag"])
            for page in pages
            for item in page.get("Contents", [])
            if item["Key"].endswith(".gfa")
        }
    except EngineError:
        return None
    except Exception as error:  # AWS's refusal (no permission...): the count is unknown
        if type(error).__module__.startswith("botocore."):
            return None
        raise


def _kept(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> int:
    """Groves stored before an execution that it left as they were: the ones it reused (a
    builder that reuses a verified grove does not write it again)."""
    return sum(1 for name, stat in before.items() if after.get(name) == stat)


def _local_workers(engine: Engine) -> tuple[int | None, bool]:
    """The local engine's worker count (its runs' parallelism; None for a stack), and
    whether it starts for this run."""
    from groveflow.engines import Local
    from groveflow.local.workers import default_size

    if not isinstance(engine, Local):
        return None, False
    return engine.workers or default_size(), engine._engine is None


PLAN_MEMORY_MB = 3008
"""The template's default ``PlanMemorySize`` (in MB): what :func:`estimate` holds its read to."""
MEMORY_MB = Interval(
    int,
    256,
    10240,
    message="{name}={value!r}: give a whole number of MB from 256 to 10240, as the "
    "template's BuilderMemorySize and PlanMemorySize accept",
)
"""A function's memory (in MB), as the template's BuilderMemorySize and PlanMemorySize take it."""


def estimate(
    request: Mapping[str, Any] | str | Path,
    *,
    workers: int | None = None,
    builder_memory_mb: int | None = None,
    builder_reserved_concurrency: int | None = None,
    plan_memory_mb: int = PLAN_MEMORY_MB,
    cold_engine: bool = True,
) -> RunEstimate:
    """Predict a training run's wall time and cost without starting it.

    Reads the data (CSV and Parquet through the same ingest the state machine runs),
    splits it and runs the plan's own checks (:func:`groveflow.training.plan_checks`: the
    size guard, the trial grove, OOB coverage), in a worker process held to the plan's
    memory, as the plan is on AWS: a worker over ``plan_memory_mb`` is stopped and the
    data refused by name, instead of this process growing without bound. (Where there is
    no ``/proc``, as on macOS, the worker's memory is not measured.) ``max_cost_usd`` is
    not applied: the estimate is what it would be compared with.

    Parameters
    ----------
    request : dict, or str or Path of a JSON file
        The execution input.
    workers : int or None, default=None
        Worker processes of the local engine to predict for; one per core if None.
    builder_memory_mb : int or None, default=None
        The stack's ``BuilderMemorySize`` (in MB); template.yaml's default if None, as the
        local engine and a stack deployed without overrides give the builders.
    builder_reserved_concurrency : int or None, default=None
        The stack's ``BuilderReservedConcurrency``, which clamps ``max_concurrency``.
    plan_memory_mb : int, default=3008
        The stack's ``PlanMemorySize`` (in MB): the most the reading worker may hold.
    cold_engine : bool, default=True
        Whether the run starts the local engine, as each ``groveflow train`` command and a
        process's first run do (:data:`groveflow.estimates.LOCAL_ENGINE_START_SECONDS` more).

    Returns
    -------
    RunEstimate
        The AWS wall time (by part) and cost, and the local wall time (``.local``): the
        figures a run's summary sets beside what it measured (:class:`EstimateCheck`), by
        the same computation (:meth:`RunEstimate.local_wall`) for the same workers.

    Raises
    ------
    InvalidRequest, InvalidDataset
        As the plan would refuse the run.
    DatasetTooLarge
        As the plan would refuse the run, or when reading and checking the data needs more
        than ``plan_memory_mb``.
    """
    import tempfile

    from groveflow.request import parse_train_request

    body, _ = _read(request, InvalidRequest)
    parse_train_request(body)  # a malformed request is refused here, before any worker
    if builder_memory_mb is None:
        builder_memory_mb = template_default("BuilderMemorySize")
    check_value("builder_memory_mb", builder_memory_mb, MEMORY_MB)
    check_value("plan_memory_mb", plan_memory_mb, MEMORY_MB)
    from groveflow.local.workers import default_size

    workers = workers or default_size()
    # Two workers, as on AWS two functions: Ingest (CSV and Parquet to columnar parts, within
    # IngestMemorySize), then the plan's read and checks within plan_memory_mb.
    with tempfile.TemporaryDirectory(prefix="groveflow-estimate-") as scratch:
        ingest_mb = int(template_default("IngestMemorySize"))
        ingested = _bounded(ingest_mb, "IngestMemorySize", _ingest_here, body["data"], scratch)
        converted = scratch if ingested else None
        settings = (workers, builder_memory_mb, builder_reserved_concurrency, plan_memory_mb)
        read: RunEstimate = _bounded(
            plan_memory_mb, "PlanMemorySize", _estimate_here, body, settings, converted
        )
    return replace(read, local=read.local_wall(workers, cold_engine=cold_engine))


def _ingest_here(data: Any, scratch: str) -> bool:
    """The Ingest step's work for :func:`estimate`, in its bounded worker: CSV and Parquet
    written to ``scratch`` as columnar parts; whether the data needed it."""
    import shutil

    from groveflow import telemetry
    from groveflow.ingest import _ingested_spec, ingest_parts

    spec = _ingested_spec(data)
    if spec is None:
        return False
    telemetry.logger.setLevel("WARNING")  # the Lambda step's log lines, not the command's
    for number, part in enumerate(ingest_parts(spec)):
        shutil.copy(part, Path(scratch) / f"part-{number:05d}{part.suffix}")
    return True


def _estimate_here(
    body: dict[str, Any], settings: tuple[int | None, int, int | None, int], converted: str | None
) -> RunEstimate:
    """:func:`estimate`'s work, in the process that runs it (its bounded worker)."""
    import time

    from groveflow.datasets import CONVERTED_FORMAT
    from groveflow.local.workers import default_size
    from groveflow.request import parse_train_request
    from groveflow.training import read_and_check

    workers, builder_memory_mb, builder_reserved_concurrency, plan_memory_mb = settings
    parsed = parse_train_request(body)
    started = time.perf_counter()
    spec = parsed.data
    if converted is not None:  # Ingest's parts, as the plan reads them
        spec = replace(spec, uri=f"{converted}/", format=CONVERTED_FORMAT)
    read = read_and_check(
        parsed,
        spec,
        ingested=converted is not None,
        builder_memory_mb=builder_memory_mb,
        builder_reserved_concurrency=builder_reserved_concurrency,
        plan_memory_mb=plan_memory_mb,  # data the plan would split is estimated so too
        started=started,
        workers=workers or default_size(),
        # as the plan of a new run: grove_size left out (and no n_trees "auto") is chosen
        grove_size_left_out="grove_size" not in body and parsed.auto is None,
    )
    return read.estimate


def _bounded(limit_mb: int, parameter: str, work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` run in a worker process whose memory is held to ``limit_mb`` (the
    template's ``parameter``), as a Lambda function's is (the local engine's
    :class:`~groveflow.local.workers.MemoryMonitor`); its result, or the error it raised.

    Raises
    ------
    DatasetTooLarge
        If the worker went over ``limit_mb`` (it is stopped at once).
    GroveflowError
        If the worker died without an answer.
    """
    import multiprocessing

    from groveflow.engines import start_workers
    from groveflow.local.workers import MemoryMonitor

    start_workers()  # the local engine's fork server: warm, and deaf to Ctrl-C
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_answer, args=(sender, work, args), daemon=True)
    process.start()
    sender.close()
    assert process.pid is not None  # started
    monitor = MemoryMonitor()
    watch = monitor.begin(process.pid, limit_mb)
    try:
        try:
            answer = receiver.recv()
        except EOFError:
            answer = None
        process.join()
    finally:
        peak_mb = monitor.end(watch)
        monitor.close()
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
    if watch.killed:
        stage = "the plan" if parameter == "PlanMemorySize" else "the Ingest step"
        raise DatasetTooLarge(
            f"reading and checking this data took more than {stage}'s {limit_mb} MB "
            f"({parameter}; at least {peak_mb} MB), and {stage} would run out of memory too: "
            f"train on fewer rows or columns, or give the stack a larger {parameter} "
            "(up to 10240)"
        )
    if answer is None:
        raise GroveflowError(
            f"the estimate's worker ended without an answer (exit code {process.exitcode})"
        )
    succeeded, value = answer
    if succeeded:
        return value
    raise value


def _answer(sender: Any, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A bounded worker's body: send ``(True, result)`` or ``(False, error)``."""
    try:
        answer: tuple[bool, Any] = (True, work(*args))
    except Exception as error:  # handed to the caller, who raises it
        answer = (False, error)
    try:
        sender.send(answer)
    except Exception:  # an error that does not pickle: its name and message
        sender.send((False, GroveflowError(f"{type(answer[1]).__name__}: {answer[1]}")))
    sender.close()


def _read(
    request: Mapping[str, Any] | str | Path, error: type[GroveflowError]
) -> tuple[dict[str, Any], str]:
    """The request as a fresh dict, and the stem a default id is made from."""
    if isinstance(request, str | Path):
        path = Path(request)
        try:
            value = json.loads(path.read_bytes(), parse_constant=_not_json)
        except (OSError, ValueError) as problem:
            raise error(f"cannot read the request file {path}: {problem}") from None
        if not isinstance(value, dict):
            raise error(f"{path} must hold a JSON object")
        return value, path.stem
    if not isinstance(request, Mapping):
        raise error(f"the request must be a dict or a JSON file's path, got {request!r}")
    return json.loads(json.dumps(dict(request))), "run"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (use a number or null)")


def id_for(request: Mapping[str, Any], stem: str, explicit: str | None, *, predicting: bool) -> str:
    """The id a run goes by: ``explicit``, else the request's, else one made from ``stem``.

    Raises
    ------
    InvalidRequest or InvalidPredictRequest
        If the id given is not accepted (see :mod:`groveflow.ids`).
    """
    name = "prediction_id" if predicting else "run_id"
    error = InvalidPredictRequest if predicting else InvalidRequest
    if explicit is not None:
        return check_id(explicit, name="--run-id" if not predicting else name, error=error)
    if request.get(name) is not None:
        return check_id(request[name], name=name, error=error)
    return default_id(stem)


def result_of(
    kind: str,
    run_id: str,
    execution: Execution,
    *,
    workers: int | None = None,
    cold_engine: bool = False,
) -> RunResult:
    """The :class:`RunResult` of an ended execution (``workers``, ``cold_engine``: the local
    engine's, for its local-wall estimate)."""
    output = execution.output
    return RunResult(
        kind=kind,
        status=execution.status,
        run_id=output.get("run_id", run_id) if kind == "train" else run_id,
        execution_arn=execution.execution_arn,
        seconds=round(execution.seconds, 3),
        phase_seconds=execution.phase_seconds,
        cost=execution.cost,
        metrics=output.get("metrics"),
        oob=output.get("oob"),
        trees_requested=output.get("trees_requested"),
        trees_built=output.get("trees_built"),
        groves_built=output.get("groves_built"),
        model_uri=output.get("model_uri"),
        predictions=output.get("predictions") if kind == "train" else output or None,
        local_dir=execution.local_dir,
        error=execution.error,
        cause=execution.cause,
        output=output,
        memory=stage_memory(
            (execution.cost or {}).get("by_function", {}),
            builder_estimate_mb=stored_builder_estimate(execution.local_dir)
            if kind == "train"
            else None,
        ),
        estimate=_estimate_check(execution, workers, cold_engine) if kind == "train" else None,
    )


def _estimate_check(
    execution: Execution, workers: int | None, cold_engine: bool
) -> EstimateCheck | None:
    from groveflow.estimates import EstimateCheck

    run_estimate = stored_estimate(execution.local_dir)
    if run_estimate is None:
        return None
    return EstimateCheck.of(
        run_estimate,
        seconds=execution.seconds,
        cost_usd=(execution.cost or {}).get("total_usd"),
        workers=workers,
        cold_engine=cold_engine,
    )


def stored_estimate(run_dir: Path | None) -> RunEstimate | None:
    """The plan's estimate, from the run record it stored (mirrored locally); None without."""
    from groveflow.estimates import RunEstimate

    record = run_dir / "run.json" if run_dir is not None else None
    if record is None or not record.is_file():
        return None
    try:
        raw = json.loads(record.read_bytes()).get("estimate")
        return None if raw is None else RunEstimate.from_dict(raw)
    except ValueError:
        return None


BUILDER = "BuildGroveFunction"


def stage_memory(
    by_function: Mapping[str, Mapping[str, Any]], builder_estimate_mb: int | None = None
) -> dict[str, StageMemory]:
    """Each stage's :class:`StageMemory`, from a cost estimate's ``by_function``.

    Parameters
    ----------
    by_function : dict of str to dict
        :attr:`groveflow.cost.CostEstimate.by_function` (as a dictionary).
    builder_estimate_mb : int or None, default=None
        The plan's estimate of a grove builder's peak, set beside the builders' stage.
    """
    stages = stages_of_functions()
    memory = {}
    for function, use in by_function.items():
        stage = stages.get(function, function)
        memory[stage] = StageMemory(
            stage=stage,
            function=function,
            memory_mb=int(use["memory_mb"]),
            max_memory_used_mb=use.get("max_memory_used_mb"),
            invocations=int(use["invocations"]),
            out_of_memory=int(use.get("out_of_memory", 0)),
            estimate_mb=builder_estimate_mb if function == BUILDER else None,
        )
    return memory


def template_default(parameter: str) -> int:
    """A number parameter's default in template.yaml (``BuilderMemorySize``...): what the
    local engine and a stack deployed without overrides use."""
    from groveflow.application import application_root
    from groveflow.local.template import read_template

    parameters = read_template(application_root() / "template.yaml").get("Parameters", {})
    return int(parameters[parameter]["Default"])


@functools.lru_cache(maxsize=1)
def stages_of_functions() -> dict[str, str]:
    """Each template function's stage: the top-level state of a state machine (the Map,
    for a Map's child) whose ``${...}`` placeholder its ``DefinitionSubstitutions`` fill
    with ``!GetAtt <Function>.Arn``, as template.yaml declares them."""
    from groveflow.application import application_root
    from groveflow.local.template import read_template

    root = application_root()
    stages: dict[str, str] = {}
    for resource in read_template(root / "template.yaml").get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        properties = resource.get("Properties", {})
        functions = {
            name: value["Fn::GetAtt"][0]
            for name, value in properties.get("DefinitionSubstitutions", {}).items()
            if isinstance(value, dict) and "Fn::GetAtt" in value
        }
        definition = json.loads((root / properties["DefinitionUri"]).read_text())
        for state, node in definition.get("States", {}).items():
            for placeholder in re.findall(r"\$\{(\w+)\}", json.dumps(node)):
                if placeholder in functions:
                    stages.setdefault(functions[placeholder], state)
    return stages


def stored_builder_estimate(run_dir: Path | None) -> int | None:
    """The plan's size-guard estimate, from the run record it stored (mirrored locally)."""
    record = run_dir / "run.json" if run_dir is not None else None
    if record is None or not record.is_file():
        return None
    try:
        estimate = json.loads(record.read_bytes()).get("builder_estimate_mb")
    except ValueError:
        return None
    return estimate if isinstance(estimate, int) else None


# --------------------------------------------------------------------------------- search

SEARCH = "SearchStateMachine"


@dataclass(frozen=True)
class SearchCandidate:
    """One candidate of a search: its run, its parameters and its score per round it ran.

    Parameters
    ----------
    run_id : str
        ``<search>-c007``: the candidate's run, holding its groves.
    params : dict
        The values it took of the search space.
    scores : tuple of (int, float)
        ``(trees, score)`` for each round it ran: OOB or validation accuracy (R^2 for
        regression) with that many trees.
    """

    run_id: str
    params: dict[str, Any]
    scores: tuple[tuple[int, float], ...]

    @property
    def score(self) -> float:
        """Its score in the last round it ran."""
        return self.scores[-1][1]


@dataclass(frozen=True)
class SearchResult:
    """What a search gave: the winner's model as a :class:`RunResult`, and the leaderboard.

    Parameters
    ----------
    search_id : str
    run : RunResult
        The winner grown to ``n_trees`` (or refit, with the validation metric) and merged:
        its holdout metrics, model and cost (the whole search's).
    strategy, metric : str or None
    winner : str or None
        The run id of the winning candidate.
    winner_params : dict
        Its ``model.params``.
    rounds : list of (int, int)
        Each round's ``(candidates, trees per candidate)``.
    trees_fitted : int or None
        Trees the search's builders fit (earlier groves kept, not refit).
    candidates : list of SearchCandidate
        Best first: those that ran the most rounds, then by their last score.
    """

    search_id: str
    run: RunResult
    strategy: str | None = None
    metric: str | None = None
    winner: str | None = None
    winner_params: dict[str, Any] = field(default_factory=dict)
    rounds: list[tuple[int, int]] = field(default_factory=list)
    trees_fitted: int | None = None
    candidates: list[SearchCandidate] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """Whether the search succeeded."""
        return self.run.succeeded

    def raise_for_status(self) -> SearchResult:
        """This result if it succeeded; else :class:`RunFailed` naming the error."""
        self.run.raise_for_status()
        return self

    def load_forest(self) -> Any:
        """The winner's forest (:class:`groveflow.artifact.Forest`), validated."""
        return self.run.load_forest()


def search(
    request: Mapping[str, Any] | str | Path,
    *,
    engine: Engine | None = None,
    run_id: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search hyperparameters: run the search state machine on ``request``.

    Parameters
    ----------
    request : dict, or str or Path of a JSON file
        A training request with a ``search`` section (see :mod:`groveflow.tuning`).
    engine : Engine or None, default=None
        Where to run; the process's embedded local engine if None.
    run_id : str or None, default=None
        The search id; the request's ``run_id``, else one made from the file name and the
        time. The same id and input again resumes the search (stored groves are reused).
    on_progress, on_start : callable or None, default=None
        As for :func:`train`.

    Returns
    -------
    SearchResult
        The leaderboard and the winner's model; a refused input gives a failed result
        naming the error, with no grove built.
    """
    import dataclasses

    from groveflow.engines import Local
    from groveflow.tuning import run_ids

    body, stem = _read(request, InvalidRequest)
    search_id = id_for(body, stem, run_id, predicting=False)
    body["run_id"] = search_id
    engine = engine or default_engine()
    if isinstance(engine, Local):
        try:
            candidates = run_ids(body)
        except InvalidRequest:
            candidates = []  # the search's plan refuses it, by name
        for candidate in candidates:  # mirrored and restored as the search's own run is
            engine.engine.mirror.take(keys.run_prefix(candidate))
            engine.engine.restore(candidate)
    execution = engine.execute(
        SEARCH, body, run_id=search_id, on_progress=on_progress, on_start=on_start
    )
    winner = execution.output.get("run_id")
    run = result_of("train", winner or search_id, execution)
    if isinstance(engine, Local) and winner:
        run = dataclasses.replace(run, local_dir=engine.engine.run_dir(winner))
    board = execution.output.get("search") or {}
    return SearchResult(
        search_id=search_id,
        run=run,
        strategy=board.get("strategy"),
        metric=board.get("metric"),
        winner=board.get("winner"),
        winner_params=board.get("winner_params") or {},
        rounds=[(int(n), int(t)) for n, t in board.get("rounds", [])],
        trees_fitted=board.get("trees_fitted"),
        candidates=[
            SearchCandidate(
                run_id=c["run_id"],
                params=c["params"],
                scores=tuple((int(t), float(s)) for t, s in c["scores"]),
            )
            for c in board.get("candidates", [])
        ],
    )

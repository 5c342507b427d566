"""A Distributed Map Run as AWS runs it: its failure tolerance, its counts, its end when the
execution stops, and reading it while the execution starts."""

from __future__ import annotations

import json
from typing import Any, cast

from groveflow.local.moto_compat.failing import fail_state

__all__ = [
    "abort_the_map_run_of_a_stopped_execution",
    "accept_integer_tolerated_failure_percentage",
    "count_every_item_from_the_start",
    "exceeds_tolerance",
    "fail_map_run_beyond_tolerance",
    "read_map_runs_of_executions_still_starting",
]


def exceeds_tolerance(failed: int, total: int, count: int, percentage: float) -> bool:
    """Whether a Map Run with ``failed`` of ``total`` items failed exceeds its tolerance.

    Parameters
    ----------
    failed : int
        Items whose child execution failed or timed out.
    total : int
        Items in the Map Run.
    count : int
        ``ToleratedFailureCount``; 0 means not set.
    percentage : float
        ``ToleratedFailurePercentage`` (0-100); 0 means not set.

    Notes
    -----
    As on AWS, no failure is tolerated when neither threshold is set, and the run
    fails when ``failed > count`` or ``100 * failed / total > percentage`` for any
    threshold that is set. Unlike AWS, an explicit 0 next to a non-zero other
    threshold is read as "not set".
    """
    if failed == 0:
        return False
    if count == 0 and percentage == 0:
        return True
    over_count = count > 0 and failed > count
    over_percentage = percentage > 0 and 100.0 * failed / total > percentage
    return over_count or over_percentage


def fail_map_run_beyond_tolerance() -> None:
    """Wrap ``DistributedIterationComponent._map_run`` to enforce the failure tolerance.

    moto turns a failed child into a ``null`` result and always succeeds the Map
    Run. AWS fails it with ``States.ExceedToleratedFailureThreshold`` (catchable
    by the Map state's Catch) once failures exceed ToleratedFailureCount/-Percentage
    (or their ...Path values, or an UpdateMapRun), default 0. Unlike AWS, the check
    runs when all items have finished, not at the first failure past the threshold.
    """
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )

    cls = component.DistributedIterationComponent
    original = cls._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        if not env.is_running():  # StopExecution: the run is ABORTED, not failed by its items
            return
        record = eval_input.map_run_record
        failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
        total = record.item_counter.total.get()
        count, percentage = record.tolerated_failure_count, record.tolerated_failure_percentage
        if not exceeds_tolerance(failed, total, count, percentage):
            return
        env.stack.pop()  # the outputs the original pushed
        cause = (
            f"{failed} of {total} items failed; tolerated: "
            f"ToleratedFailureCount={count}, ToleratedFailurePercentage={percentage}"
        )
        fail_state(
            env,
            StatesErrorNameType.StatesExceedToleratedFailureThreshold,
            cause,
            HistoryEventType.MapRunFailed,
            details=(MapRunFailedEventDetails, "mapRunFailedEventDetails"),
        )

    cls._map_run = _map_run  # type: ignore[method-assign]


def accept_integer_tolerated_failure_percentage() -> None:
    """Wrap ``AmazonStateLanguageParser.parse`` to accept ``"ToleratedFailurePercentage": 50``.

    moto's grammar types the field as a NUMBER token, which excludes integers, so
    ``CreateStateMachine`` rejects what AWS accepts. The wrapper rewrites integer
    values of Map states to floats before parsing; the stored definition is unchanged.
    """
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = AmazonStateLanguageParser.parse

    def parse(definition: str) -> Any:
        return original(_float_tolerated_percentages(definition))

    AmazonStateLanguageParser.parse = staticmethod(parse)  # type: ignore[method-assign]


def _float_tolerated_percentages(definition: str) -> str:
    key = "ToleratedFailurePercentage"
    if key not in definition:
        return definition
    try:
        document = json.loads(definition)
    except ValueError:
        return definition  # let the parser report it

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get(key)
            if node.get("Type") == "Map" and type(value) is int:
                node[key] = float(value)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(document)
    return json.dumps(document)


def count_every_item_from_the_start() -> None:
    """Make a Map Run's ``itemCounts.total`` every item from the start, as AWS reports it.

    moto counts an item into ``total`` when a worker takes it (``_eval_job`` of
    ``DistributedItemProcessorWorker`` and ``DistributedIteratorWorker``), so with
    children on a few threads a 10-item Map Run reads "0 of 4" until its end. The total
    is now set when the first worker launches, from the job pool's size, and each job
    no longer adds to it; the other counts are unchanged.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker as iterator_worker,
    )

    map_cls = component.DistributedIterationComponent
    launch_worker = map_cls._launch_worker

    def _launch_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        if not job_pool.__dict__.get("_groveflow_counted"):
            job_pool._groveflow_counted = True
            eval_input.map_run_record.item_counter.total.offset(job_pool._jobs_number)
        return launch_worker(self, env=env, eval_input=eval_input, job_pool=job_pool)

    map_cls._launch_worker = _launch_worker  # type: ignore[method-assign]
    for cls in (
        processor_worker.DistributedItemProcessorWorker,
        iterator_worker.DistributedIteratorWorker,
    ):
        eval_job = cls._eval_job

        def _eval_job(self: Any, env: Any, job: Any, _original: Any = eval_job) -> None:
            self._map_run_record.item_counter.total.offset(-1)  # moto counts it again
            _original(self, env, job)

        cls._eval_job = _eval_job  # type: ignore[method-assign]


def abort_the_map_run_of_a_stopped_execution() -> None:
    """Wrap ``DistributedIterationComponent._eval_body`` and the item workers' ``_eval_job``.

    moto ends the Map Run of an execution stopped while it runs ``SUCCEEDED``
    (``DescribeMapRun``), and runs the items not yet started in the stopped
    environment, counting each ``failed``. AWS reports the Map Run ``ABORTED``, the
    children that were running ``aborted`` and the items never started ``pending``.
    An item whose execution has stopped is now counted pending and not run; an aborted
    child leaves ``executionCounts.running``, and a child whose task ended in an error
    because its execution stopped counts aborted, not failed; the Map Run ends ``ABORTED``. (Its
    history still shows ``MapRunSucceeded`` before ``ExecutionAborted``.)
    """
    from moto.stepfunctions.parser.api import MapRunStatus
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    map_cls = component.DistributedIterationComponent
    eval_body = map_cls._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        record = env.stack[-1].map_run_record
        try:
            eval_body(self, env)
        finally:
            if not env.is_running() and record.status == MapRunStatus.SUCCEEDED:
                record.set_stop(status=MapRunStatus.ABORTED)

    map_cls._eval_body = _eval_body  # type: ignore[method-assign]

    worker_cls = processor_worker.DistributedItemProcessorWorker
    eval_job = worker_cls._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        record = self._map_run_record
        if not env.is_running():  # the execution was stopped before this item started
            record.item_counter.pending.count()
            return
        failed = record.item_counter.failed.get()
        eval_job(self, env, job)
        if isinstance(env.program_state(), ProgramStopped):
            record.execution_counter.running.offset(-1)
        elif (
            isinstance(self._env.program_state(), ProgramStopped)
            and record.item_counter.failed.get() > failed
        ):
            # the execution stopped while this child ran and its task ended in an error,
            # which moto counts failed: AWS counts the child aborted
            record.item_counter.failed.offset(-1)
            record.item_counter.aborted.count()

    worker_cls._eval_job = _eval_job  # type: ignore[method-assign]


def read_map_runs_of_executions_still_starting() -> None:
    """Replace ``StepFunctionsParserBackend.list_map_runs`` and ``describe_map_run``.

    An execution's interpreter environment is created by its worker thread after
    ``StartExecution`` returns (the definition is parsed first), and moto reads
    ``exec_worker.env`` without checking it: ``ListMapRuns`` on an execution that
    is still starting, or ``DescribeMapRun`` while any execution is, is an HTTP 500
    (``AttributeError``). AWS lists no Map Runs for an execution that has none yet.
    moto's own "not found" is a 500 too (``ResourceNotFound()`` lacks its message);
    AWS answers 400 ``ResourceNotFound``.
    """
    from moto.stepfunctions.parser.models import ResourceNotFound, StepFunctionsParserBackend

    def environment(execution: Any) -> Any:
        return getattr(execution.exec_worker, "env", None)

    def list_map_runs(self: Any, execution_arn: str) -> dict[str, Any]:
        env = environment(self.describe_execution(execution_arn=execution_arn))
        records = env.map_run_record_pool_manager.get_all() if env is not None else []
        return {"mapRuns": [record.list_item() for record in records]}

    def describe_map_run(self: Any, map_run_arn: str) -> dict[str, Any]:
        for execution in self._get_executions():
            env = environment(execution)
            record = env.map_run_record_pool_manager.get(map_run_arn) if env else None
            if record is not None:
                return cast(dict[str, Any], record.describe())
        raise ResourceNotFound(f"Map Run Does Not Exist: {map_run_arn!r}")

    backend = cast(Any, StepFunctionsParserBackend)
    backend.list_map_runs = list_map_runs
    backend.describe_map_run = describe_map_run

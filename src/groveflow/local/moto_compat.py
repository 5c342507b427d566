"""Corrections to moto's Step Functions interpreter, so local runs fail where AWS fails.

The embedded local engine runs unmodified ASL in moto's interpreter (a port of
LocalStack's). In the tested moto range it departs from AWS in ways that would
let a run succeed locally and fail in the cloud, or run slower than it must.
:func:`apply_corrections` applies twenty-one patches, keeps parse trees
(:func:`_parse_each_definition_once`) and announces ended executions
(:func:`when_execution_ends`); each is one short function below that names the moto
symbol it replaces. ``tests/test_moto_compat.py`` pins both the
uncorrected moto behaviour (so we notice an upstream fix) and the corrected one.
A Distributed Map Run runs its children on a few threads (:func:`set_map_child_threads`,
pinned by ``tests/test_moto_map_threads.py``), not on three threads per child, counts
every item into its total from the start, and the server lists moto's services once,
not on every request. Retry waits are real sleeps, which a test may shorten
(:func:`set_retry_wait_scale`).

Departures that are avoided or only documented, not patched:

- ``ResultWriter``'s ``WriterConfig`` (``Transformation``, ``OutputType``) is
  ignored: results are written as AWS's default (``NONE``, ``JSON``) writes them.
  A Map Run that fails writes no results (AWS writes those that finished).
- ``ItemBatcher`` and ``"ExecutionType": "EXPRESS"`` child executions are parse
  errors at ``CreateStateMachine``.
- A Task's ``TimeoutSeconds`` fails the state with ``States.Timeout`` on time,
  but the Lambda handler keeps running in its thread: the worker pool enforces
  Lambda timeouts itself.
- The payload limit is checked on each state's output (moto) and each Map's
  result (corrected here), not on a Task's input after ``Parameters``.
- ``mock_aws`` sets ``boto3.DEFAULT_SESSION`` to ``None``, dropping hooks
  registered on it: the engine uses ``ThreadedMotoServer`` instead.
- A ``ClientError`` raised by an invoke hook must carry ``ResponseMetadata``
  (``HTTPStatusCode``, ``RequestId``), or the interpreter fails the state with
  ``States.Runtime`` instead of ``Lambda.<Code>``.
- Map Run ``executionCounts.running`` is never decremented for failed children;
  ``itemCounts`` are right.
- ``StartSyncExecution`` and ``RedriveExecution`` are refused (see
  :func:`_answer_operations_moto_lacks`); the AWS CLI and boto3 send
  ``StartSyncExecution`` to ``sync-<host>``, so a client needs
  ``inject_host_prefix=False`` to reach a local endpoint with it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, cast

import boto3
import moto

from groveflow.errors import GroveflowError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TESTED_MOTO_RANGE",
    "UnsupportedMotoVersion",
    "apply_corrections",
    "exceeds_tolerance",
    "is_valid_execution_name",
    "set_map_child_threads",
    "set_retry_wait_scale",
    "when_execution_ends",
]

TESTED_MOTO_RANGE = ((5, 2, 3), (5, 3, 0))
"""Moto versions the corrections are tested against: ``>=5.2.3,<5.3``."""

MAX_PAYLOAD_BYTES = 256 * 1024
"""Step Functions' payload quota: a state's input, output or result, as UTF-8 JSON."""

# What AWS refuses in an execution name (StartExecution's ``name``), besides its length.
_NAME_FORBIDDEN = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')

_apply_lock = threading.Lock()
_applied = threading.Event()


class UnsupportedMotoVersion(GroveflowError):
    """The installed moto is outside the range the corrections were tested against."""


def apply_corrections() -> None:
    """Patch moto's interpreter in this process; idempotent and thread-safe.

    Call it before the first ``CreateStateMachine``; the patches act on classes and
    functions, so the server may already be running.

    Raises
    ------
    UnsupportedMotoVersion
        If ``moto.__version__`` is outside :data:`TESTED_MOTO_RANGE`.
    """
    with _apply_lock:
        if _applied.is_set():
            return
        _check_moto_version(moto.__version__)
        _import_interpreter_without_batch_backend()
        _parse_each_definition_once()  # before the integer percentages' wrapper
        _parse_each_json_path_once()
        _share_error_lookups()
        _return_failed_children_whole()  # before the tolerance check, which wraps it
        _fail_map_run_beyond_tolerance()
        _write_map_results_as_aws_does()
        _limit_map_results_to_the_payload_quota()
        _let_no_catcher_take_data_limit_exceeded()
        _name_and_check_started_executions()
        _accept_integer_tolerated_failure_percentage()
        _iterate_instead_of_recursing_in_map_workers()
        _run_map_children_on_bounded_threads()
        _count_every_item_from_the_start()
        _list_moto_services_once()
        _cache_boto_clients()
        _let_fail_states_reraise_states_errors()
        _read_map_runs_of_executions_still_starting()
        _abort_the_map_run_of_a_stopped_execution()  # after the item counts' wrappers
        _answer_operations_moto_lacks()
        _page_execution_history()
        _refuse_inputs_over_the_payload_quota()
        _scale_retry_waits()
        _announce_ended_executions()
        _applied.set()


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


def is_valid_execution_name(name: str) -> bool:
    """Whether Step Functions accepts ``name`` for an execution.

    1 to 80 characters, none of them whitespace, brackets ``< > { } [ ]``, wildcards
    ``? *``, the characters ``" # % \\ ^ | ~ ` $ & , ; : /`` or control characters
    (U+0000-001F, U+007F-009F), as StartExecution's API reference states.
    """
    return 1 <= len(name) <= 80 and _NAME_FORBIDDEN.search(name) is None


def _check_moto_version(version: str) -> None:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    parsed = tuple(int(part) for part in match.groups()) if match else None
    low, high = TESTED_MOTO_RANGE
    if parsed is None or not low <= parsed < high:
        raise UnsupportedMotoVersion(
            f"moto=={version} is not supported by groveflow's local engine; "
            "install moto>=5.2.3,<5.3 (the range its interpreter corrections are tested on)"
        )


def _fail_map_run_beyond_tolerance() -> None:
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
        _fail(
            env,
            StatesErrorNameType.StatesExceedToleratedFailureThreshold,
            cause,
            HistoryEventType.MapRunFailed,
            details=(MapRunFailedEventDetails, "mapRunFailedEventDetails"),
        )

    cls._map_run = _map_run  # type: ignore[method-assign]


def _fail(
    env: Any, error_type: Any, cause: str, event_type: Any, *, details: tuple[Any, str]
) -> None:
    """Fail the state as the interpreter fails one: a ``States.*`` error, its history event."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    error = StatesErrorName(typ=error_type)
    details_class, details_key = details
    event_details = {details_key: details_class(error=error.error_name, cause=cause)}
    raise FailureEventException(
        FailureEvent(
            env=env,
            error_name=error,
            event_type=event_type,
            event_details=cast(EventDetails, event_details),
        )
    )


def _import_interpreter_without_batch_backend() -> None:
    """Import moto's ASL interpreter without loading its Batch and EC2 backends (~0.7 s).

    Not a departure from AWS, a start-up cost: the interpreter's Batch integration
    needs only ``moto.batch.utils``, but importing it runs ``moto/batch/__init__.py``,
    which loads the Batch backend and, through it, all of EC2's models. A placeholder
    package lets ``moto.batch.utils`` load alone; it is removed afterwards, so a later
    ``import moto.batch`` (a Batch call to the local server) loads the real package.
    """
    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or spec.submodule_search_locations is None:
        return
    placeholder = types.ModuleType("moto.batch")
    placeholder.__path__ = list(spec.submodule_search_locations)
    sys.modules["moto.batch"] = placeholder
    try:
        import moto.stepfunctions.parser.asl.parse.asl_parser  # noqa: F401
    finally:
        if sys.modules.get("moto.batch") is placeholder:
            del sys.modules["moto.batch"]


_PARSED_DEFINITIONS = 64
"""Parse trees kept (of state machine definitions, and of intrinsic functions apart)."""


def _parse_each_definition_once() -> None:
    """Keep the parse trees of ``AmazonStateLanguageParser.parse`` and
    ``IntrinsicParser.parse`` (asl/parse/), and build each call's components afresh from
    the kept tree.

    Not a correction: moto lexes and parses a state machine's whole definition with
    ANTLR's Python runtime at every ``StartExecution`` (and each intrinsic function as it
    builds the program), 0.1-0.2 s of the engine's CPU per execution, beside its workers,
    for the same text every time. The components (what executes) are still made new for
    each execution by moto's own preprocessor, from an unchanged tree; a definition that
    does not parse is not kept, so it fails as before.
    """
    from moto.stepfunctions.parser.asl.parse import asl_parser, preprocessor
    from moto.stepfunctions.parser.asl.parse.intrinsic import intrinsic_parser
    from moto.stepfunctions.parser.asl.parse.intrinsic import preprocessor as intrinsic

    lock = threading.Lock()

    def kept(original: Callable[[str], Any], visitor: type) -> Callable[[str], Any]:
        trees: dict[str, Any] = {}

        def parse(source: str) -> Any:
            tree = trees.get(source)
            if tree is None:
                component, tree = original(source)
                with lock:
                    if len(trees) >= _PARSED_DEFINITIONS:
                        trees.pop(next(iter(trees)))
                    trees[source] = tree
                return component, tree
            return visitor().visit(tree), tree

        return parse

    language = asl_parser.AmazonStateLanguageParser
    language.parse = staticmethod(  # type: ignore[method-assign,assignment]
        kept(language.parse, preprocessor.Preprocessor)
    )
    functions = intrinsic_parser.IntrinsicParser
    functions.parse = staticmethod(  # type: ignore[method-assign,assignment]
        kept(functions.parse, intrinsic.Preprocessor)
    )


def _parse_each_json_path_once() -> None:
    """Keep the JSONPath expressions moto parses (``extract_json`` in asl/utils/json_path.py,
    ``ResultPath`` in asl/component/common/path/result_path.py), by their text.

    Not a correction: moto parses a path each time a state reads or writes one, and each
    parse builds jsonpath_ng's PLY parser anew (its grammar tables included), several times
    per Map child. A parsed expression is only read by ``find`` and ``update``, so one
    serves every evaluation of the same text, with the same matches.
    """
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    for module in (json_path, result_path):
        module.parse = functools.lru_cache(maxsize=1024)(module.parse)  # type: ignore[attr-defined]


def _share_error_lookups() -> None:
    """Let every ``ErrorLookupFactory`` (moto/core/errors.py) share one cache.

    Not a correction: ``get_error_model`` makes a new factory for each error it answers, so
    its cache of a service's error shapes is built and dropped every time: a grove
    builder's "no stored grove yet" (S3 ``NoSuchKey``) cost the server more than the object
    it then stores. The shapes come from the same service model; the answers are the same.
    """
    from moto.core import errors

    shared: dict[str, Any] = {}

    def __init__(self: Any) -> None:
        self._error_lut_cache = shared

    errors.ErrorLookupFactory.__init__ = __init__  # type: ignore[method-assign]


def _accept_integer_tolerated_failure_percentage() -> None:
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


def _iterate_instead_of_recursing_in_map_workers() -> None:
    """Turn the tail recursion of the Map workers' ``_eval_pool`` into a loop.

    ``IterationWorker._eval_pool``, ``DistributedItemProcessorWorker._eval_pool`` and
    ``DistributedIteratorWorker._eval_pool`` end each job by calling themselves for
    the next one, so a worker dies with RecursionError near 1,000 items and the
    execution stays RUNNING forever. The wrapper runs the original once per job and
    defers its self-call (always its last statement) to a loop.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        iteration_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker as iterator_worker,
    )

    for cls in (
        iteration_worker.IterationWorker,
        processor_worker.DistributedItemProcessorWorker,
        iterator_worker.DistributedIteratorWorker,
    ):
        cls._eval_pool = _iterative(cls.__dict__["_eval_pool"])  # type: ignore[method-assign,assignment]


def _iterative(eval_pool: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
    def run_jobs(worker: Any, job: Any, worker_frame: Any) -> None:
        pending: list[tuple[Any, Any]] | None = worker.__dict__.get("_groveflow_pending")
        if pending is not None:  # the self-call at the end of a job: run it from the loop
            pending.append((job, worker_frame))
            return
        worker._groveflow_pending = pending = [(job, worker_frame)]
        try:
            while pending:
                eval_pool(worker, *pending.pop())
        finally:
            del worker._groveflow_pending

    return run_jobs


def _cache_boto_clients() -> None:
    """Replace ``boto_client_for`` (asl/utils/boto_client.py) with a per-session cache.

    moto builds a new boto3 client for every Lambda invoke and S3 read (milliseconds
    each), and concurrently from Map workers, although creating clients from one
    session is not thread-safe. Clients are cached per (default session, region,
    service, endpoint) and created under a lock; created clients are thread-safe.
    Clients copy the session's event hooks when created: register the invoke hook
    before the first execution, or call ``boto3.setup_default_session()`` again.
    """
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        with lock:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session, stubbed = boto3.DEFAULT_SESSION, botocore_stubber.enabled
            key = (session, region, service, stubbed, moto_server_port())
            if key not in clients:
                clients[key] = original(region, service, state_credentials)
            return clients[key]

    for name, module in list(sys.modules.items()):
        if (
            name.startswith("moto.stepfunctions")
            and vars(module).get("boto_client_for") is original
        ):
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]


def _let_fail_states_reraise_states_errors() -> None:
    """Rebind ``CustomErrorName`` in moto's ``state_fail`` module to an unchecked name.

    moto refuses a Fail state error that begins with ``States.`` and fails the
    execution with ``States.Runtime`` instead, so a Fail state that re-raises a
    caught error (``"ErrorPath": "$.Error"``, as after a Map's Catch) loses the
    error's name, e.g. ``States.ExceedToleratedFailureThreshold``. AWS reports it.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    class FailStateErrorName(ErrorName):
        """Any error name a Fail state reports, ``States.*`` included."""

    state_fail.CustomErrorName = FailStateErrorName  # type: ignore[misc,assignment]


def _read_map_runs_of_executions_still_starting() -> None:
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


def _return_failed_children_whole() -> None:
    """Wrap ``DistributedItemProcessorWorker._eval_job`` and ``_map_run`` to keep AWS's records.

    moto keeps a failed child's result as ``null``. AWS returns each failed child whole
    in the Map's result (its ARN, name, input, error, cause, dates: about 1 KB), which is
    what makes a Map without a ``ResultWriter`` pass the payload quota when many children
    fail within the tolerance. Each child's record, as ``ResultWriter`` writes it, is kept
    on its Map Run (``_groveflow_children``, by item index); a failed child's replaces its
    ``null`` in the result.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )

    worker_cls = processor_worker.DistributedItemProcessorWorker
    eval_job = worker_cls._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        started = _now()
        eval_job(self, env, job)
        record = self._map_run_record
        children = record.__dict__.setdefault("_groveflow_children", {})
        children[job.job_index] = _child_record(record, job, env.program_state(), started)

    worker_cls._eval_job = _eval_job  # type: ignore[method-assign]

    map_cls = component.DistributedIterationComponent
    map_run = map_cls._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        map_run(self, env, eval_input)
        outputs = env.stack[-1]
        for index, child in _children(eval_input.map_run_record).items():
            if child["Status"] != "SUCCEEDED" and index < len(outputs):
                outputs[index] = child

    map_cls._map_run = _map_run  # type: ignore[method-assign]


def _now() -> str:
    import datetime

    now = datetime.datetime.now(tz=datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _children(map_run_record: Any) -> dict[int, dict[str, Any]]:
    children: dict[int, dict[str, Any]] = map_run_record.__dict__.get("_groveflow_children", {})
    return children


def _child_record(map_run_record: Any, job: Any, state: Any, started: str) -> dict[str, Any]:
    """One child execution as AWS records it in a Map's result and in ResultWriter's files."""
    import uuid

    from moto.stepfunctions.parser.asl.eval.program_state import (
        ProgramEnded,
        ProgramError,
        ProgramStopped,
        ProgramTimedOut,
    )

    name = str(uuid.uuid4())
    head = map_run_record.map_run_arn.replace(":mapRun:", ":execution:").rsplit(":", 1)[0]
    record: dict[str, Any] = {
        "ExecutionArn": f"{head}:{name}",
        "Input": json.dumps(job.job_input, separators=(",", ":")),
        "InputDetails": {"Included": True},
        "Name": name,
        "StartDate": started,
        "StateMachineArn": map_run_record.map_state_machine_arn,
        "StopDate": _now(),
        "RedriveCount": 0,
    }
    if isinstance(state, ProgramEnded):
        record["Status"] = "SUCCEEDED"
        record["Output"] = json.dumps(job.job_output, separators=(",", ":"))
        record["OutputDetails"] = {"Included": True}
        record["RedriveStatus"] = "NOT_REDRIVABLE"
        record["RedriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
        return record
    error: dict[str, Any] = {}
    if isinstance(state, ProgramError):
        error = dict(state.error or {})
    elif isinstance(state, ProgramStopped):
        error = {"error": state.error, "cause": state.cause}
    record["Status"] = (
        "TIMED_OUT"
        if isinstance(state, ProgramTimedOut)
        else "ABORTED"
        if isinstance(state, ProgramStopped)
        else "FAILED"
    )
    record["Error"] = error.get("error") or "States.Runtime"
    record["Cause"] = error.get("cause") or ""
    record["RedriveStatus"] = "REDRIVABLE"
    return record


def _write_map_results_as_aws_does() -> None:
    """Replace ``ResultWriter._eval_body`` and ``ResourceEvalS3._handle_put_object``.

    moto evaluates ResultWriter's ``Parameters`` paths against the Map's result (the
    children's outputs); AWS evaluates them against the state's input, as every other
    field (``"Bucket.$": "$.plan.bucket"``). moto writes
    ``<Prefix>/<map run id>/manifest.json`` with empty ``ResultFiles`` and no results.
    AWS writes each status's children to ``SUCCEEDED_0.json``,
    ``FAILED_0.json`` (failed, timed out and aborted children) and ``PENDING_0.json``
    beside the manifest, lists them in it with their sizes, and the Map's result becomes
    ``{"MapRunArn": ..., "ResultWriterDetails": {"Bucket": ..., "Key": <manifest>}}``.
    Each file is a JSON array of the records :func:`_return_failed_children_whole` keeps,
    in item order; only statuses with children get a file.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (  # noqa: E501
        ResultWriter,
    )

    def _eval_body(self: Any, env: Any) -> None:
        result = env.stack.pop()
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()  # the state's input
        env.stack.extend((result, parameters))  # as the resource expects them
        self.resource_eval.eval_resource(env=env)

    ResultWriter._eval_body = _eval_body  # type: ignore[method-assign]

    def _handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        parameters = env.stack.pop()
        env.stack.pop()  # the Map's result: the Map Run's full records are written instead
        s3 = ResourceEvalS3._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        record = env.map_run_record_pool_manager.get_all()[-1]
        bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        directory = f"{prefix}{record.map_run_arn.rsplit(':', 1)[-1]}/"
        by_status: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for _, child in sorted(_children(record).items()):
            by_status["SUCCEEDED" if child["Status"] == "SUCCEEDED" else "FAILED"].append(child)
        files: dict[str, list[dict[str, Any]]] = {status: [] for status in by_status}
        for status, children in by_status.items():
            if children:
                body = json.dumps(children).encode()
                key = f"{directory}{status}_0.json"
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                files[status].append({"Key": key, "Size": len(body)})
        manifest = {
            "DestinationBucket": bucket,
            "MapRunArn": record.map_run_arn,
            "ResultFiles": files,
        }
        key = f"{directory}manifest.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
        env.stack.append(
            {"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}}
        )

    ResourceEvalS3._handle_put_object = staticmethod(_handle_put_object)  # type: ignore[method-assign]


def _limit_map_results_to_the_payload_quota() -> None:
    """Wrap ``StateMap._eval_execution`` to fail a Map whose result passes 256 KiB.

    moto checks each state's output after ``ResultPath`` and ``OutputPath``, so a Map
    with ``"ResultPath": null`` passes whatever its children return. AWS fails the state
    with ``States.DataLimitExceeded`` when its result (the children's outputs, or
    ResultWriter's small object) is larger than :data:`MAX_PAYLOAD_BYTES`.
    """
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap

    original = StateMap._eval_execution

    def _eval_execution(self: Any, env: Any) -> None:
        original(self, env)
        if not env.is_running():  # StopExecution: the run is ABORTED, its output unused
            return
        size = len(json.dumps(env.stack[-1], separators=(",", ":")).encode())
        if size <= MAX_PAYLOAD_BYTES:
            return
        cause = (
            f"The state/task '{self.name}' returned a result with a size exceeding the maximum "
            f"number of bytes service limit ({size} > {MAX_PAYLOAD_BYTES} bytes)."
        )
        _fail(
            env,
            StatesErrorNameType.StatesStatesDataLimitExceeded,
            cause,
            HistoryEventType.MapStateFailed,
            details=(ExecutionFailedEventDetails, "executionFailedEventDetails"),
        )

    StateMap._eval_execution = _eval_execution  # type: ignore[method-assign]


def _let_no_catcher_take_data_limit_exceeded() -> None:
    """Wrap ``ErrorEqualsDecl._eval_body`` so no Retry or Catch matches a DataLimitExceeded.

    moto's ``States.ALL`` matches every error. AWS: "States.DataLimitExceeded ... is a
    terminal error that can't be caught by the States.ALL error type": the execution
    fails with it, whatever the state's Catch.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
        ErrorEqualsDecl,
    )

    original = ErrorEqualsDecl._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        if getattr(env.stack[-1], "error_name", None) == "States.DataLimitExceeded":
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    ErrorEqualsDecl._eval_body = _eval_body  # type: ignore[method-assign]


def _name_and_check_started_executions() -> None:
    """Wrap ``StepFunctionsParserBackend.start_execution`` to name and check executions.

    moto names an execution started without ``name`` ``"None"`` (so the next unnamed
    start fails with ``ExecutionAlreadyExists``) and accepts any name. AWS generates a
    UUID, and refuses a name :func:`is_valid_execution_name` rejects with
    ``InvalidName``.
    """
    import uuid

    from moto.stepfunctions.exceptions import InvalidName
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any, state_machine_arn: str, name: str | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        if name is None:
            name = str(uuid.uuid4())
        if not is_valid_execution_name(name):
            raise InvalidName(f"Invalid Name: '{name}'")
        return original(self, state_machine_arn, name, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


_map_child_threads = {"limit": 8}  # set by set_map_child_threads


def _count_every_item_from_the_start() -> None:
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


def _list_moto_services_once() -> None:
    """Cache ``moto.backends.list_of_moto_modules`` (moto_server/werkzeug_app.py).

    The server's dispatcher calls it for every request, under a lock: a listing of moto's
    package directory and some 200 ``isdir`` calls, 0.5-0.7 ms of CPU per request that
    a 10,000-grove run (four requests a grove) spends beside its workers. The folders
    cannot change while the process runs; the answer is the same tuple every time.
    """
    from moto import backends

    listed = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: listed


_end_callbacks: dict[str, Callable[[], None]] = {}
_end_lock = threading.Lock()


def when_execution_ends(execution_arn: str, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (in the interpreter's thread) once the execution has ended, its
    status, output, error and cause already recorded; returns what cancels the call.

    An execution that ended before this call is not announced: a follower registers
    before it first describes the execution, so it either sees the end or is told of it.
    """
    with _end_lock:
        _end_callbacks[execution_arn] = callback

    def cancel() -> None:
        with _end_lock:
            if _end_callbacks.get(execution_arn) is callback:
                del _end_callbacks[execution_arn]

    return cancel


def _announce_ended_executions() -> None:
    """Wrap ``BaseExecutionWorkerCommunication.terminated`` to call the callback
    :func:`when_execution_ends` registered for the execution.

    Not a correction: the engine's follower otherwise learns that an execution ended only
    by polling ``DescribeExecution``, up to a poll interval late, which every fit in a
    cross-validation pays. The recorded status is moto's, unchanged.
    """
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    terminated = BaseExecutionWorkerCommunication.terminated

    def announce(self: Any) -> None:
        terminated(self)
        with _end_lock:
            callback = _end_callbacks.pop(self.execution.exec_arn, None)
        if callback is not None:
            callback()

    BaseExecutionWorkerCommunication.terminated = announce  # type: ignore[method-assign]


def set_map_child_threads(threads: int) -> int:
    """Run at most ``threads`` children of a Distributed Map Run at once, from now on.

    Parameters
    ----------
    threads : int
        At least 1; default 8. The local engine passes twice its worker count: a child
        invoking on each worker and one ready for each worker as soon as it is free.

    Returns
    -------
    int
        The limit it replaces.

    Raises
    ------
    ValueError
        If ``threads`` is below 1.
    """
    if threads < 1:
        raise ValueError(f"a Map Run needs at least one child thread, got threads={threads}")
    previous, _map_child_threads["limit"] = _map_child_threads["limit"], threads
    return previous


def _run_map_children_on_bounded_threads() -> None:
    """Wrap ``DistributedIterationComponent._launch_worker`` and ``Program.eval``.

    moto's ``_map_run`` starts MaxConcurrency worker threads (one per item when it is
    0), and each child's program runs in a thread of its own that its worker joins with
    no timeout, beside the Task's ``TimeoutSeconds`` thread: at MaxConcurrency 1,000,
    3,000 threads, nearly all waiting for one of the local engine's few workers, contend
    for the GIL (minutes of system CPU in a 10,000-item Map). A Map Run now starts at most
    ``min(MaxConcurrency, threads)`` workers (:func:`set_map_child_threads`), each running
    its children one after another, and a program without a timeout runs in its caller's
    thread. No more children run at once than AWS allows, nor than the pool can serve;
    counts, results, failures and ``maxConcurrency`` are unchanged. Unlike AWS, a child
    waiting (Retry backoff, a Wait state) keeps its worker from starting another.
    """
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )

    map_cls = component.DistributedIterationComponent
    launch_worker = map_cls._launch_worker

    def _launch_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        launched = job_pool.__dict__.get("_groveflow_workers", 0)
        if launched >= _map_child_threads["limit"]:
            return None  # enough workers for this Map Run: they take the remaining items
        job_pool._groveflow_workers = launched + 1
        return launch_worker(self, env=env, eval_input=eval_input, job_pool=job_pool)

    map_cls._launch_worker = _launch_worker  # type: ignore[method-assign]
    program_eval = Program.eval

    def eval_in_callers_thread(self: Any, env: Any) -> None:
        if self.timeout_seconds is not None or not env.is_frame():
            program_eval(self, env)
            return
        env.next_state_name = self.start_at.start_at_name
        super(Program, self).eval(env)  # what moto's thread runs, joined without a timeout

    Program.eval = eval_in_callers_thread  # type: ignore[method-assign]


def _abort_the_map_run_of_a_stopped_execution() -> None:
    """Wrap ``DistributedIterationComponent._eval_body`` and the item workers' ``_eval_job``.

    moto ends the Map Run of an execution stopped while it runs ``SUCCEEDED``
    (``DescribeMapRun``), and runs the items not yet started in the stopped
    environment, counting each ``failed``. AWS reports the Map Run ``ABORTED``, the
    children that were running ``aborted`` and the items never started ``pending``.
    An item whose execution has stopped is now counted pending and not run; an aborted
    child leaves ``executionCounts.running``; the Map Run ends ``ABORTED``. (Its
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
        eval_job(self, env, job)
        if isinstance(env.program_state(), ProgramStopped):
            record.execution_counter.running.offset(-1)

    worker_cls._eval_job = _eval_job  # type: ignore[method-assign]


def _answer_operations_moto_lacks() -> None:
    """Add four Step Functions operations to ``StepFunctionResponse``; answer any other
    operation moto lacks as AWS answers an unknown one.

    moto raises ``NotImplementedError`` for ``StartSyncExecution``, ``RedriveExecution``,
    ``ValidateStateMachineDefinition`` and ``ListStateMachineVersions``, which its server
    turns into HTTP 500 with an HTML page. Now:

    - ``StartSyncExecution`` on a STANDARD state machine is refused with AWS's
      ``StateMachineTypeNotSupported``; an EXPRESS one with ``UnknownOperationException``
      (the local engine runs STANDARD machines only);
    - ``RedriveExecution`` checks the execution exists (``ExecutionDoesNotExist``) and
      answers ``ExecutionNotRedrivable``: for a running or succeeded execution as AWS
      does; for an ended one because the local engine does not redrive (a departure: AWS
      would rerun its failed state, which for groveflow's machines is a Fail state);
    - ``ValidateStateMachineDefinition`` parses the definition as ``CreateStateMachine``
      does: ``{"result": "OK", "diagnostics": []}``, or ``FAIL`` with one
      ``SCHEMA_VALIDATION_FAILED`` error naming what the parser refused;
    - ``ListStateMachineVersions`` lists the published versions, newest first;
    - any other operation moto does not implement is HTTP 400
      ``UnknownOperationException`` in JSON, as AWS answers an unknown operation.
    """
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from moto.stepfunctions import responses

    class ExecutionNotRedrivable(ServiceException):
        code = "ExecutionNotRedrivable"

    class StateMachineTypeNotSupported(ServiceException):
        code = "StateMachineTypeNotSupported"

    class UnknownOperationException(ServiceException):
        code = "UnknownOperationException"  # not in moto's model of Step Functions' errors

    response_cls = cast(Any, responses.StepFunctionResponse)

    def start_sync_execution(self: Any) -> Any:
        machine = self.stepfunction_backend.describe_state_machine(
            self._get_param("stateMachineArn")
        )
        if machine.type == "STANDARD":
            raise StateMachineTypeNotSupported(
                "This operation is not supported by this type of state machine"
            )
        raise UnknownOperationException(
            "groveflow's local engine runs STANDARD state machines only"
        )

    def redrive_execution(self: Any) -> Any:
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        status = str(getattr(execution.exec_status, "value", execution.exec_status))
        if status in ("RUNNING", "SUCCEEDED"):
            raise ExecutionNotRedrivable(f"Execution is {status} and cannot be redriven")
        raise ExecutionNotRedrivable(
            f"Execution is {status}; groveflow's local engine does not redrive executions: "
            "start a new execution with the same run_id to resume the run"
        )

    def validate_state_machine_definition(self: Any) -> Any:
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        try:
            AmazonStateLanguageParser.parse(self._get_param("definition") or "")
        except Exception as error:  # the parser's refusals have no common class
            diagnostic = {
                "severity": "ERROR",
                "code": "SCHEMA_VALIDATION_FAILED",
                "message": f"{type(error).__name__}: {error}"[:1000],
            }
            return ActionResult({"result": "FAIL", "diagnostics": [diagnostic], "truncated": False})
        return ActionResult({"result": "OK", "diagnostics": [], "truncated": False})

    def list_state_machine_versions(self: Any) -> Any:
        machine = self.stepfunction_backend.describe_state_machine(
            self._get_param("stateMachineArn")
        )
        versions = sorted(machine.versions.values(), key=lambda v: v.version, reverse=True)
        listed = [
            {"stateMachineVersionArn": v.arn, "creationDate": v.create_date} for v in versions
        ]
        return ActionResult({"stateMachineVersions": listed})

    response_cls.start_sync_execution = start_sync_execution
    response_cls.redrive_execution = redrive_execution
    response_cls.validate_state_machine_definition = validate_state_machine_definition
    response_cls.list_state_machine_versions = list_state_machine_versions
    call_action = response_cls.call_action

    def call_action_or_refuse(self: Any) -> Any:
        try:
            return call_action(self)
        except NotImplementedError:
            refusal = {
                "__type": "UnknownOperationException",
                "message": f"{self._get_action()} is not served by the local engine",
            }
            headers = {"Content-Type": "application/x-amz-json-1.0"}
            return 400, headers, json.dumps(refusal)

    response_cls.call_action = call_action_or_refuse


def _page_execution_history() -> None:
    """Wrap ``StepFunctionResponse.get_execution_history`` to honour its paging.

    moto returns every event, oldest first, whatever ``maxResults``, ``nextToken`` and
    ``reverseOrder`` say. AWS returns at most ``maxResults`` events (0 or none: 100;
    at most 1,000), newest first with ``reverseOrder``, and a ``nextToken`` while more
    remain; a token it did not issue is ``InvalidToken``.
    """
    from moto.core.responses import ActionResult
    from moto.stepfunctions import responses
    from moto.stepfunctions.exceptions import InvalidToken, ValidationException

    response_cls = cast(Any, responses.StepFunctionResponse)

    def get_execution_history(self: Any) -> Any:
        history = self.stepfunction_backend.get_execution_history(self._get_param("executionArn"))
        events = list(history["events"])
        if self._get_param("reverseOrder"):
            events.reverse()
        limit = self._get_int_param("maxResults") or 100
        if not 0 < limit <= 1000:
            raise ValidationException(
                f"1 validation error detected: Value '{limit}' at 'maxResults' failed to "
                "satisfy constraint: Member must have value less than or equal to 1000"
            )
        token = self._get_param("nextToken")
        start = _history_offset(token, len(events)) if token else 0
        if start is None:
            raise InvalidToken("Invalid Token: 'Invalid token'")
        page: dict[str, Any] = {"events": events[start : start + limit]}
        if start + limit < len(events):
            page["nextToken"] = f"groveflow-history-{start + limit}"
        return ActionResult(page)

    response_cls.get_execution_history = get_execution_history


def _history_offset(token: str, events: int) -> int | None:
    """The offset a ``nextToken`` of :func:`_page_execution_history` stands for, or None."""
    prefix, _, number = token.rpartition("-")
    if prefix != "groveflow-history" or not number.isdigit() or int(number) > events:
        return None
    return int(number)


def _refuse_inputs_over_the_payload_quota() -> None:
    """Wrap ``StepFunctionsParserBackend.start_execution`` to refuse an input over 256 KiB.

    moto starts the execution, whose first state then fails with
    ``States.DataLimitExceeded``. AWS refuses it at ``StartExecution`` with
    ``InvalidExecutionInput`` when the input is larger than :data:`MAX_PAYLOAD_BYTES`
    (262,144 bytes of UTF-8).
    """
    from moto.stepfunctions.exceptions import InvalidExecutionInput
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original: Any = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        size = len((execution_input or "").encode())
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidExecutionInput(
                f"Invalid State Machine Execution Input: the input is {size} bytes, "
                f"more than the {MAX_PAYLOAD_BYTES} bytes allowed"
            )
        return original(self, state_machine_arn, name, execution_input, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


_retry_waits = {"scale": 1.0}  # set by set_retry_wait_scale


def set_retry_wait_scale(scale: float) -> float:
    """Wait ``scale`` times each Retry interval the States Language gives, from now on.

    Not a correction: the interpreter sleeps each retrier's interval (its backoff and
    jitter), as AWS waits, and so does the local engine by default (1.0). A test of many
    retried faults may shorten the waits; the attempts, their order and their outcomes
    are the same.

    Parameters
    ----------
    scale : float
        Between 0 and 1.

    Returns
    -------
    float
        The scale it replaces.

    Raises
    ------
    ValueError
        If ``scale`` is outside [0, 1].
    """
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"a retry wait scale is between 0 and 1, got scale={scale}")
    previous, _retry_waits["scale"] = _retry_waits["scale"], scale
    return previous


def _scale_retry_waits() -> None:
    """Give ``retrier_decl`` (the Retry interval's ``time.sleep``) a clock that waits
    :func:`set_retry_wait_scale`'s share of each interval; 1.0 by default."""
    import time

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    retrier_decl.time = types.SimpleNamespace(  # type: ignore[assignment]
        sleep=lambda seconds: time.sleep(seconds * _retry_waits["scale"])
    )

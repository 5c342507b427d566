"""Corrections to moto's Step Functions interpreter, so local runs fail where AWS fails.

The embedded local engine runs unmodified ASL in moto's interpreter (a port of
LocalStack's). In the tested moto range it departs from AWS in ways that would
let a run succeed locally and fail in the cloud, or run slower than it must.
:func:`apply_corrections` applies twenty-one patches, keeps parse trees
(:func:`~groveflow.local.moto_compat.speed.parse_each_definition_once`) and announces ended
executions (:func:`when_execution_ends`); each is one short function that names the moto
symbol it replaces, in a module of this package by concern: :mod:`.map_runs` (tolerance,
counts, a stopped execution's Map Run), :mod:`.map_results` (failed children whole,
``ResultWriter``), :mod:`.map_threads`, :mod:`.payload` (the 256 KiB quota),
:mod:`.executions` (names, Fail states, retry waits, ends), :mod:`.operations` (API
operations moto lacks, history paging) and :mod:`.speed` (start-up and per-request costs,
not corrections). ``tests/test_moto_compat.py`` pins both the
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
  :func:`.operations.answer_operations_moto_lacks`); the AWS CLI and boto3 send
  ``StartSyncExecution`` to ``sync-<host>``, so a client needs
  ``inject_host_prefix=False`` to reach a local endpoint with it.
"""

from __future__ import annotations

import threading

import moto

from groveflow.local.moto_compat import (
    executions,
    map_results,
    map_runs,
    map_threads,
    operations,
    payload,
    speed,
)
from groveflow.local.moto_compat.executions import (
    is_valid_execution_name,
    set_retry_wait_scale,
    when_execution_ends,
)
from groveflow.local.moto_compat.map_runs import exceeds_tolerance
from groveflow.local.moto_compat.map_threads import set_map_child_threads
from groveflow.local.moto_compat.payload import MAX_PAYLOAD_BYTES
from groveflow.local.moto_compat.versions import (
    TESTED_MOTO_RANGE,
    UnsupportedMotoVersion,
    check_moto_version,
)

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

_apply_lock = threading.Lock()
_applied = threading.Event()


def apply_corrections() -> None:
    """Patch moto's interpreter in this process; idempotent and thread-safe.

    Call it before the first ``CreateStateMachine``; the patches act on classes and
    functions, so the server may already be running. Their order matters where two wrap
    the same moto symbol: each wraps what the one before left.

    Raises
    ------
    UnsupportedMotoVersion
        If ``moto.__version__`` is outside :data:`TESTED_MOTO_RANGE`.
    """
    with _apply_lock:
        if _applied.is_set():
            return
        check_moto_version(moto.__version__)
        speed.import_interpreter_without_batch_backend()
        speed.parse_each_definition_once()  # before the integer percentages' wrapper
        speed.parse_each_json_path_once()
        speed.share_error_lookups()
        map_results.return_failed_children_whole()  # before the tolerance check, which wraps it
        map_runs.fail_map_run_beyond_tolerance()
        map_results.write_map_results_as_aws_does()
        payload.limit_map_results_to_the_payload_quota()
        payload.let_no_catcher_take_data_limit_exceeded()
        executions.name_and_check_started_executions()
        map_runs.accept_integer_tolerated_failure_percentage()
        map_threads.iterate_instead_of_recursing_in_map_workers()
        map_threads.run_map_children_on_bounded_threads()
        map_runs.count_every_item_from_the_start()
        speed.list_moto_services_once()
        speed.cache_boto_clients()
        executions.let_fail_states_reraise_states_errors()
        map_runs.read_map_runs_of_executions_still_starting()
        map_runs.abort_the_map_run_of_a_stopped_execution()  # after the item counts' wrappers
        operations.answer_operations_moto_lacks()
        operations.page_execution_history()
        payload.refuse_inputs_over_the_payload_quota()
        executions.scale_retry_waits()
        executions.announce_ended_executions()
        _applied.set()

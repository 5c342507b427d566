"""An execution as AWS starts and ends it: its name, its Fail states' errors, its retry
waits, and the announcement of its end."""

from __future__ import annotations

import re
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "announce_ended_executions",
    "is_valid_execution_name",
    "let_fail_states_reraise_states_errors",
    "name_and_check_started_executions",
    "scale_retry_waits",
    "set_retry_wait_scale",
    "when_execution_ends",
]

# What AWS refuses in an execution name (StartExecution's ``name``), besides its length.
_NAME_FORBIDDEN = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')


def is_valid_execution_name(name: str) -> bool:
    """Whether Step Functions accepts ``name`` for an execution.

    1 to 80 characters, none of them whitespace, brackets ``< > { } [ ]``, wildcards
    ``? *``, the characters ``" # % \\ ^ | ~ ` $ & , ; : /`` or control characters
    (U+0000-001F, U+007F-009F), as StartExecution's API reference states.
    """
    return 1 <= len(name) <= 80 and _NAME_FORBIDDEN.search(name) is None


def name_and_check_started_executions() -> None:
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


def let_fail_states_reraise_states_errors() -> None:
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


def announce_ended_executions() -> None:
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


def scale_retry_waits() -> None:
    """Give ``retrier_decl`` (the Retry interval's ``time.sleep``) a clock that waits
    :func:`set_retry_wait_scale`'s share of each interval; 1.0 by default."""
    import time

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    retrier_decl.time = types.SimpleNamespace(  # type: ignore[assignment]
        sleep=lambda seconds: time.sleep(seconds * _retry_waits["scale"])
    )

"""Step Functions' payload quota (256 KiB), where moto does not hold a run to it."""

from __future__ import annotations

import json
from typing import Any

from groveflow.local.moto_compat.failing import fail_state

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "let_no_catcher_take_data_limit_exceeded",
    "limit_map_results_to_the_payload_quota",
    "refuse_inputs_over_the_payload_quota",
]

MAX_PAYLOAD_BYTES = 256 * 1024
"""Step Functions' payload quota: a state's input, output or result, as UTF-8 JSON."""


def limit_map_results_to_the_payload_quota() -> None:
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
        fail_state(
            env,
            StatesErrorNameType.StatesStatesDataLimitExceeded,
            cause,
            HistoryEventType.MapStateFailed,
            details=(ExecutionFailedEventDetails, "executionFailedEventDetails"),
        )

    StateMap._eval_execution = _eval_execution  # type: ignore[method-assign]


def let_no_catcher_take_data_limit_exceeded() -> None:
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


def refuse_inputs_over_the_payload_quota() -> None:
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

"""Step Functions operations moto lacks or answers otherwise than AWS."""

from __future__ import annotations

import functools
import json
from typing import Any, cast

__all__ = [
    "answer_operations_moto_lacks",
    "page_execution_history",
]


def answer_operations_moto_lacks() -> None:
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
    from moto.stepfunctions import responses

    response_cls = cast(Any, responses.StepFunctionResponse)
    response_cls.start_sync_execution = _start_sync_execution
    response_cls.redrive_execution = _redrive_execution
    response_cls.validate_state_machine_definition = _validate_state_machine_definition
    response_cls.list_state_machine_versions = _list_state_machine_versions
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


@functools.cache
def _refusal(code: str) -> type[Exception]:
    """The moto ``ServiceException`` (HTTP 400, in JSON) whose error is ``code``, made once:
    ``ExecutionNotRedrivable``, ``StateMachineTypeNotSupported``, or
    ``UnknownOperationException`` (not in moto's model of Step Functions' errors)."""
    from moto.core.exceptions import ServiceException

    return type(code, (ServiceException,), {"code": code})


def _start_sync_execution(self: Any) -> Any:
    machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
    if machine.type == "STANDARD":
        raise _refusal("StateMachineTypeNotSupported")(
            "This operation is not supported by this type of state machine"
        )
    raise _refusal("UnknownOperationException")(
        "groveflow's local engine runs STANDARD state machines only"
    )


def _redrive_execution(self: Any) -> Any:
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    status = str(getattr(execution.exec_status, "value", execution.exec_status))
    if status in ("RUNNING", "SUCCEEDED"):
        raise _refusal("ExecutionNotRedrivable")(f"Execution is {status} and cannot be redriven")
    raise _refusal("ExecutionNotRedrivable")(
        f"Execution is {status}; groveflow's local engine does not redrive executions: "
        "start a new execution with the same run_id to resume the run"
    )


def _validate_state_machine_definition(self: Any) -> Any:
    from moto.core.responses import ActionResult
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


def _list_state_machine_versions(self: Any) -> Any:
    from moto.core.responses import ActionResult

    machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
    versions = sorted(machine.versions.values(), key=lambda v: v.version, reverse=True)
    listed = [{"stateMachineVersionArn": v.arn, "creationDate": v.create_date} for v in versions]
    return ActionResult({"stateMachineVersions": listed})


def page_execution_history() -> None:
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
    """The offset a ``nextToken`` of :func:`page_execution_history` stands for, or None."""
    prefix, _, number = token.rpartition("-")
    if prefix != "groveflow-history" or not number.isdigit() or int(number) > events:
        return None
    return int(number)

"""Failing a state as moto's interpreter fails one: a ``States.*`` error and its history event."""

from __future__ import annotations

from typing import Any, cast

__all__ = [
    "fail_state",
]


def fail_state(
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

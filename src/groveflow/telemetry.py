"""Structured logs and metrics from the functions (Powertools for AWS Lambda).

Every log line is JSON with the function's context and the keys the library
appends (``run_id``, ``grove``, ``shard``); metrics go out in CloudWatch's
embedded metric format (namespace ``groveflow``): ``GroveSeconds`` and
``TreesBuilt`` per grove, ``ForestTrees`` and ``MergeSeconds`` per merge,
``RowsScored`` per shard. On the local engine the same lines go to the
engine's log file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from groveflow.errors import GroveflowError

__all__ = ["MetricUnit", "lambda_handler", "logger", "metrics"]

logger = Logger(service="groveflow")
metrics = Metrics(namespace="groveflow", service="groveflow")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler(handler: Handler) -> Handler:
    """Wrap a handler: context in every log line (cleared per invocation), metrics flushed.

    A :class:`~groveflow.errors.GroveflowError` is logged with its traceback, then raised
    again as a fresh error of the same class and message from this frame: Lambda's error
    document (the execution's Cause) then names the problem without groveflow's internals.
    """
    instrumented = metrics.log_metrics(logger.inject_lambda_context(clear_state=True)(handler))

    @functools.wraps(handler)
    def wrapped(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = instrumented(event, context)
        except GroveflowError as error:
            logger.exception("request refused: %s", error)
            raise type(error)(str(error)) from None
        return result

    return wrapped

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

__all__ = ["MetricUnit", "lambda_handler", "logger", "metrics"]

logger = Logger(service="groveflow")
metrics = Metrics(namespace="groveflow", service="groveflow")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler(handler: Handler) -> Handler:
    """Wrap a handler: context in every log line (cleared per invocation), metrics flushed."""

    @functools.wraps(handler)
    @metrics.log_metrics
    @logger.inject_lambda_context(clear_state=True)
    def wrapped(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return handler(event, context)

    return wrapped

"""Merge the planned groves into one forest, evaluate it, and write the model manifest last."""

from typing import Any

from groveflow import environment
from groveflow.telemetry import lambda_handler
from groveflow.training import merge_run


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return merge_run(event, bucket=environment.bucket())

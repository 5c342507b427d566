"""Fit one seeded grove of trees and store it under its deterministic key."""

from typing import Any

from groveflow import environment
from groveflow.telemetry import lambda_handler
from groveflow.training import build_grove


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return build_grove(event, bucket=environment.bucket())

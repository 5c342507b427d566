"""Check every shard's part and write the predictions manifest, last."""

from typing import Any

from groveflow import environment
from groveflow.prediction import finish_predictions
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return finish_predictions(event, bucket=environment.bucket())

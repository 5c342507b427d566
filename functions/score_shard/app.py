"""Score one shard of rows with the model and write its predictions part."""

from typing import Any

from groveflow import environment
from groveflow.prediction import score_shard
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return score_shard(event, bucket=environment.bucket())

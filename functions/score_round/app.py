"""Score a search round's candidates, keep the best, plan the next round or the winner's."""

from typing import Any

from groveflow import environment
from groveflow.telemetry import lambda_handler
from groveflow.tuning import score_round


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return score_round(
        event,
        bucket=environment.bucket(),
        builder_reserved_concurrency=environment.builder_reserved_concurrency(),
    )

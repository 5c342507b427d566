"""Check a Parquet run's request before it is converted: a bad one fails here, by name."""

from typing import Any

from groveflow.parquet import check_before_conversion
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return check_before_conversion(event)

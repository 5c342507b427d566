"""Check a CSV or Parquet run's request before it is ingested: a bad one fails here, by name."""

from typing import Any

from groveflow.ingest import check_before_ingest
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return check_before_ingest(event)

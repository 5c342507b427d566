"""Read CSV and Parquet input into the columnar files the other functions read (pyarrow here)."""

from typing import Any

from groveflow import environment
from groveflow.ingest import ingest
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return ingest(
        event,
        bucket=environment.bucket(),
        data_buckets=environment.data_buckets(),
        local_paths=environment.local_paths_allowed(),
    )

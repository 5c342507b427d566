"""Convert Parquet input to columnar files the other functions read (pyarrow lives only here)."""

from typing import Any

from groveflow import environment
from groveflow.parquet import convert_parquet
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return convert_parquet(
        event,
        bucket=environment.bucket(),
        data_buckets=environment.data_buckets(),
        local_paths=environment.local_paths_allowed(),
    )

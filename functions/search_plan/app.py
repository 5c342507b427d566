"""Plan a search: check every candidate, split the data once, write the first round's plan."""

from typing import Any

from groveflow import environment
from groveflow.telemetry import lambda_handler
from groveflow.tuning import plan_search


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return plan_search(
        event,
        bucket=environment.bucket(),
        builder_memory_mb=environment.builder_memory_mb(),
        data_buckets=environment.data_buckets(),
        local_paths=environment.local_paths_allowed(),
        builder_reserved_concurrency=environment.builder_reserved_concurrency(),
    )

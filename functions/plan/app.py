"""Plan a training run: validate the input, split the data, write the grove plan."""

from typing import Any

from groveflow import environment
from groveflow.telemetry import lambda_handler
from groveflow.training import plan_run, unreserved_concurrency


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return plan_run(
        event,
        bucket=environment.bucket(),
        builder_memory_mb=environment.builder_memory_mb(),
        data_buckets=environment.data_buckets(),
        local_paths=environment.local_paths_allowed(),
        builder_reserved_concurrency=environment.builder_reserved_concurrency(),
        account_concurrency=unreserved_concurrency,
        plan_memory_mb=environment.function_memory_mb(),
        merge_memory_mb=environment.merge_memory_mb(),
        shard_mb=environment.shard_mb(),
        seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )

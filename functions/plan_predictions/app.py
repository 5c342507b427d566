"""Plan a prediction run: find the model, check the input's columns, write the shard plan."""

from typing import Any

from groveflow import environment
from groveflow.prediction import plan_predict_run
from groveflow.telemetry import lambda_handler


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return plan_predict_run(
        event,
        bucket=environment.bucket(),
        data_buckets=environment.data_buckets(),
        local_paths=environment.local_paths_allowed(),
    )

"""Following an execution: status and the Map Run's item counts, the same on AWS and locally.

The CLI follows a deployed stack's execution and a local engine's execution with
this one code path: ``DescribeExecution`` for the status, ``ListMapRuns`` and
``DescribeMapRun`` for the groves (or shards) done, failed and running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Progress", "execution_cost", "follow", "history", "phase_seconds", "poll"]


@dataclass(frozen=True)
class Progress:
    """Where an execution is.

    Parameters
    ----------
    status : str
        The execution's status (``RUNNING``, ``SUCCEEDED``, ``FAILED``...).
    map_label : str or None
        The Map state whose items are counted (the latest one started).
    succeeded, failed, running, total : int
        The Map Run's item counts (0 before the Map starts).
    elapsed_seconds : float
        Since the execution started.
    """

    status: str
    map_label: str | None
    succeeded: int
    failed: int
    running: int
    total: int
    elapsed_seconds: float


def poll(sfn: Any, execution_arn: str) -> tuple[Progress, dict[str, Any]]:
    """One look at an execution: its progress and its full description."""
    description = dict(sfn.describe_execution(executionArn=execution_arn))
    counts: dict[str, int] = {}
    label = None
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if runs:
        latest = max(runs, key=lambda run: run["startDate"])
        counts = sfn.describe_map_run(mapRunArn=latest["mapRunArn"]).get("itemCounts", {})
        label = latest["mapRunArn"].split(":")[-2].split("/")[-1]
    started = description["startDate"]
    ended = description.get("stopDate")
    now = ended or time.time()
    elapsed = (now if isinstance(now, float) else now.timestamp()) - started.timestamp()
    progress = Progress(
        status=description["status"],
        map_label=label,
        succeeded=int(counts.get("succeeded", 0)),
        failed=int(counts.get("failed", 0)) + int(counts.get("timedOut", 0)),
        running=int(counts.get("running", 0)),
        total=int(counts.get("total", 0)),
        elapsed_seconds=max(0.0, elapsed),
    )
    return progress, description


def follow(
    sfn: Any,
    execution_arn: str,
    on_progress: Callable[[Progress], None] | None = None,
    poll_seconds: float = 1.0,
    wait: Callable[[float], object] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution ends; return its final description.

    Polls start 50 ms apart and back off to ``poll_seconds``. ``wait(seconds)``
    pauses between polls; an engine that knows when something happened may
    return early. Without ``on_progress`` only ``DescribeExecution`` is called.
    A ``KeyboardInterrupt`` stops following, never the execution: it propagates
    to the caller, which says how to follow again.
    """
    delay = min(0.05, poll_seconds)
    while True:
        if on_progress is not None:
            progress, description = poll(sfn, execution_arn)
            on_progress(progress)
        else:
            description = dict(sfn.describe_execution(executionArn=execution_arn))
        if description["status"] != "RUNNING":
            return description
        wait(delay)
        delay = min(delay * 2, poll_seconds)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of an execution's history, oldest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(dict(event) for event in page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def phase_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state of an execution, from its history (Task and Map states)."""
    entered: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for event in history:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if details is None:
            continue
        name = details["name"]
        if event["type"].endswith("StateEntered"):
            entered[name] = event["timestamp"]
        elif name in entered:
            elapsed = (event["timestamp"] - entered.pop(name)).total_seconds()
            seconds[name] = round(seconds.get(name, 0.0) + elapsed, 3)
    return seconds


def _function_names(node: Any, inside_map: bool = False) -> dict[str, bool]:
    """Every Lambda ``FunctionName`` an ASL definition invokes -> whether a Map child invokes it."""
    found: dict[str, bool] = {}
    if isinstance(node, dict):
        name = node.get("FunctionName")
        if isinstance(name, str):
            found[name] = found.get(name, False) or inside_map
        for key, value in node.items():
            child_inside = inside_map or key in ("ItemProcessor", "Iterator")
            for function, in_map in _function_names(value, child_inside).items():
                found[function] = found.get(function, False) or in_map
    elif isinstance(node, list):
        for value in node:
            for function, in_map in _function_names(value, inside_map).items():
                found[function] = found.get(function, False) or in_map
    return found


@dataclass(frozen=True)
class _Configured:
    """What a deployed function's configuration says of its bill: where it logs, its
    architecture (None: not said) and its ``/tmp`` (in MB)."""

    log_group: str
    architecture: str | None
    ephemeral_mb: int


def _configured(lambda_client: Any, function: str) -> _Configured:
    """A function's LoggingConfig group (else Lambda's default group), architecture and
    ephemeral storage, from its configuration."""
    try:
        configuration = lambda_client.get_function_configuration(FunctionName=function)
    except Exception:  # not found, or no permission: fall back to Lambda's defaults
        configuration = {}
    group = configuration.get("LoggingConfig", {}).get("LogGroup")
    name = function.split(":")[6] if ":" in function else function
    return _Configured(
        log_group=str(group or f"/aws/lambda/{name}"),
        architecture=(configuration.get("Architectures") or [None])[0],
        ephemeral_mb=int(configuration.get("EphemeralStorage", {}).get("Size", 512)),
    )


def execution_cost(
    sfn: Any, lambda_client: Any, logs: Any, description: dict[str, Any], s3: Any = None
) -> dict[str, Any]:
    """What an ended execution cost on AWS, from Lambda's REPORT lines and the history.

    The functions are found in the state machine's definition and their REPORT lines read
    from their log groups for the execution's time window (other executions of the same
    functions in that window are counted too), with every event's bytes for the logs'
    ingestion; their duration is priced at the architecture and ephemeral storage their
    configuration gives (template.yaml's default architecture where it does not say). The
    S3 requests are counted as the estimate counts them
    (:func:`groveflow.estimates.run_s3_requests`), with the run's stored estimate read
    through ``s3`` when given (the run record the output's ``model_uri`` names).
    """
    from groveflow.cost import (
        STACK_ARCHITECTURE,
        Billed,
        child_transitions,
        count_state_transitions,
        estimate_cost,
        logs_of_functions,
    )
    from groveflow.estimates import run_s3_requests

    definition = json.loads(
        sfn.describe_state_machine(stateMachineArn=description["stateMachineArn"])["definition"]
    )
    functions = _function_names(definition)
    start_ms = int(description["startDate"].timestamp() * 1000)
    end_ms = int(description["stopDate"].timestamp() * 1000) + 1000
    invocations: list[Billed] = []
    child_attempts, log_bytes = 0, 0
    architectures: set[str] = set()
    for function, in_map in functions.items():
        configured = _configured(lambda_client, function)
        billed, logged = logs_of_functions(logs, [configured.log_group], start_ms, end_ms)
        invocations.extend(replace(b, ephemeral_mb=configured.ephemeral_mb) for b in billed)
        log_bytes += logged
        child_attempts += len(billed) if in_map else 0
        if configured.architecture is not None:
            architectures.add(configured.architecture)
    events = history(sfn, description["executionArn"])
    runs = sfn.list_map_runs(executionArn=description["executionArn"]).get("mapRuns", [])
    children = sum(
        sfn.describe_map_run(mapRunArn=run["mapRunArn"])["itemCounts"].get("total", 0)
        for run in runs
    )
    transitions = count_state_transitions(
        events,
        child_transitions(children, max(child_attempts, children)),
    )
    output = json.loads(description.get("output") or "null") or {}
    reads, writes = run_s3_requests(run_estimate(s3, output.get("model_uri")), invocations)
    return estimate_cost(
        invocations,
        transitions,
        # one architecture per stack (template.yaml's Architecture parameter)
        architecture=min(architectures) if len(architectures) == 1 else STACK_ARCHITECTURE,
        s3_read_requests=reads,
        s3_write_requests=writes,
        log_bytes=log_bytes,
    ).to_dict()


def run_estimate(s3: Any, model_uri: Any) -> Any:
    """The estimate stored in the record of the run whose model ``model_uri`` names
    (a :class:`groveflow.estimates.RunEstimate`), or None: no client, no such model, no
    record or estimate readable (a run refused before its record is written)."""
    if s3 is None or not isinstance(model_uri, str) or not model_uri.startswith("s3://"):
        return None
    from groveflow.estimates import RunEstimate
    from groveflow.layout import keys, run_of_model

    bucket = model_uri[len("s3://") :].split("/", 1)[0]
    try:
        run_id = run_of_model(model_uri)
        if run_id is None:
            return None
        body = s3.get_object(Bucket=bucket, Key=keys.request(run_id))["Body"].read()
        return RunEstimate.from_dict(json.loads(body)["estimate"])
    except Exception:  # missing, unreadable or from another version: not counted from it
        return None

"""Following an execution: status and the Map Run's item counts, the same on AWS and locally.

The CLI follows a deployed stack's execution and a local engine's execution with
this one code path: ``DescribeExecution`` for the status, ``ListMapRuns`` and
``DescribeMapRun`` for the groves (or shards) done, failed and running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "follow", "phase_seconds", "poll"]


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
) -> dict[str, Any]:
    """Poll until the execution ends; return its final description.

    A ``KeyboardInterrupt`` stops following, never the execution: it propagates
    to the caller, which says how to follow again.
    """
    delay = min(0.05, poll_seconds)
    while True:
        progress, description = poll(sfn, execution_arn)
        if on_progress is not None:
            on_progress(progress)
        if progress.status != "RUNNING":
            return description
        time.sleep(delay)
        delay = min(delay * 2, poll_seconds)


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

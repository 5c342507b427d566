"""Pins how many threads a Distributed Map Run uses, uncorrected and corrected.

Uncorrected moto starts MaxConcurrency worker threads and two more threads per running
child, so a 1,000-item Map at MaxConcurrency 1,000 runs 3,000 threads, nearly all waiting
for the local engine's few workers. :func:`groveflow.local.moto_compat.set_map_child_threads`
bounds them; this file checks that the bound holds, that MaxConcurrency still holds below
it, and that nothing a user sees changes: outputs, their order, item counts, tolerated
failures, the execution's history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from groveflow.local import moto_compat
from test_moto_compat import (
    HANDLERS,
    THRESHOLD_ERROR,
    LocalSfn,
    distributed_map,
    grove,
    invoke,
    items,
    local_sfn,
    uncorrected_report,
)

CHILD_THREADS = 6
ALL_AT_ONCE = 300  # children the uncorrected run holds inside the handler together


class Overlap:
    """A handler that records the most children inside it at once, and the most threads.

    Parameters
    ----------
    together : int, default=0
        If set, each child waits (up to 10 s) until this many are inside together.
    """

    def __init__(self, together: int = 0) -> None:
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together) if together else None
        self.inside = self.most = self.threads = 0

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.threads = max(self.threads, threading.active_count())
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)
            else:
                time.sleep(0.002)  # long enough for the other children to come in
        finally:
            with self.lock:
                self.inside -= 1
        return grove(event)


def _observed(local: LocalSfn, execution: dict[str, Any]) -> dict[str, Any]:
    """What a user sees of a Map execution: status, output, Map Run and history."""
    map_run = local.map_run(execution["executionArn"])
    return {
        "status": execution["status"],
        "output": json.loads(execution["output"]),
        "item_counts": map_run["itemCounts"],
        "max_concurrency": map_run["maxConcurrency"],
        "history": local.history(execution["executionArn"]),
    }


# Uncorrected moto, in a subprocess ----------------------------------------------------


def _uncorrected_report() -> dict[str, Any]:
    """Observe uncorrected moto; run by ``python -c`` in a fresh interpreter."""
    report: dict[str, Any] = {}
    with local_sfn() as local:
        overlap = HANDLERS["grove"] = Overlap(together=ALL_AT_ONCE)
        definition = distributed_map(invoke("grove"), MaxConcurrency=ALL_AT_ONCE)
        execution = local.run(definition, items(ALL_AT_ONCE))
        report["all_at_once"] = [execution["status"], overlap.most, overlap.threads]
        HANDLERS["grove"] = grove
        execution = local.run(distributed_map(invoke("grove"), MaxConcurrency=50), items(120))
        report["observed"] = _observed(local, execution)
    return report


@pytest.fixture(scope="module")
def uncorrected() -> dict[str, Any]:
    return uncorrected_report("test_moto_map_threads", timeout_seconds=120)


def test_moto_still_runs_every_child_at_once_on_three_threads_each(
    uncorrected: dict[str, Any],
) -> None:
    status, most_inside, most_threads = uncorrected["all_at_once"]
    assert (status, most_inside) == ("SUCCEEDED", ALL_AT_ONCE)
    assert most_threads >= 3 * ALL_AT_ONCE


# Corrected moto, in this process --------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[LocalSfn]:
    moto_compat.apply_corrections()
    with local_sfn() as running:
        yield running


@pytest.fixture(autouse=True)
def _child_threads() -> Iterator[None]:
    previous = moto_compat.set_map_child_threads(CHILD_THREADS)
    HANDLERS.clear()
    yield
    moto_compat.set_map_child_threads(previous)


def test_1000_children_at_max_concurrency_1000_run_on_bounded_threads(local: LocalSfn) -> None:
    # GIVEN a Distributed Map of 1,000 items at MaxConcurrency 1,000, CHILD_THREADS threads
    overlap = HANDLERS["grove"] = Overlap()
    threads_before = threading.active_count()
    # WHEN it runs
    definition = distributed_map(invoke("grove"), MaxConcurrency=1000)
    execution = local.wait(local.start(definition, items(1000)), timeout_seconds=120)
    # THEN every child ran, in order, at most CHILD_THREADS at once, on few threads
    observed = _observed(local, execution)
    assert observed["status"] == "SUCCEEDED"
    assert observed["output"] == [{"grove": i} for i in range(1000)]
    assert (observed["item_counts"]["succeeded"], observed["item_counts"]["total"]) == (1000, 1000)
    assert observed["max_concurrency"] == 1000
    assert overlap.most == CHILD_THREADS
    # two threads per child (its worker's, its Task's TimeoutSeconds one), not three, and a
    # few of the server's
    assert overlap.threads <= threads_before + 2 * CHILD_THREADS + 7


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_max_concurrency_below_the_bound_still_holds_exactly(
    local: LocalSfn, max_concurrency: int
) -> None:
    overlap = HANDLERS["grove"] = Overlap()
    definition = distributed_map(invoke("grove"), MaxConcurrency=max_concurrency)
    execution = local.run(definition, items(30))
    assert execution["status"] == "SUCCEEDED"
    assert overlap.most == max_concurrency


def test_a_map_without_max_concurrency_is_bounded_too(local: LocalSfn) -> None:
    overlap = HANDLERS["grove"] = Overlap()
    execution = local.run(distributed_map(invoke("grove")), items(100))
    assert execution["status"] == "SUCCEEDED"
    assert len(json.loads(execution["output"])) == 100
    assert overlap.most == CHILD_THREADS


def test_outputs_counts_and_history_are_those_of_uncorrected_moto(
    local: LocalSfn, uncorrected: dict[str, Any]
) -> None:
    HANDLERS["grove"] = grove
    execution = local.run(distributed_map(invoke("grove"), MaxConcurrency=50), items(120))
    assert _observed(local, execution) == uncorrected["observed"]


@pytest.mark.parametrize(("failing", "status"), [(20, "SUCCEEDED"), (21, "FAILED")])
def test_tolerated_failures_count_on_bounded_threads(
    local: LocalSfn, failing: int, status: str
) -> None:
    # GIVEN 200 items at MaxConcurrency 200 of which `failing` fail, 20 tolerated
    HANDLERS["grove"] = grove
    definition = distributed_map(invoke("grove"), MaxConcurrency=200, ToleratedFailureCount=20)
    # WHEN the Map runs on CHILD_THREADS threads
    execution = local.run(definition, items(200, failing))
    # THEN the failures are counted and tolerated exactly as without the bound
    assert (execution["status"], execution.get("error")) == (
        status,
        THRESHOLD_ERROR if status == "FAILED" else None,
    )
    counts = local.map_run(execution["executionArn"])["itemCounts"]
    assert (counts["failed"], counts["succeeded"], counts["total"]) == (failing, 200 - failing, 200)


def test_an_execution_timeout_still_ends_a_running_execution(local: LocalSfn) -> None:
    # The top-level program keeps its own thread: its TimeoutSeconds is what joins it.
    wait = {"Type": "Wait", "Seconds": 30, "End": True}
    definition = {"StartAt": "W", "TimeoutSeconds": 1, "States": {"W": wait}}
    execution = local.wait(local.start(definition), timeout_seconds=120)
    # TIMED_OUT, not SUCCEEDED: the execution's timeout ended it, not the 30 s Wait's end
    assert execution["status"] == "TIMED_OUT"


def test_set_map_child_threads_refuses_less_than_one() -> None:
    with pytest.raises(ValueError, match="at least one child thread, got threads=0"):
        moto_compat.set_map_child_threads(0)


def test_the_server_lists_motos_services_once_not_per_request() -> None:
    # GIVEN moto's service listing, uncorrected, in a fresh interpreter: it lists the
    # package directory on every call
    probe = (
        "import os\n"
        "from moto import backends\n"
        "calls = []\n"
        "real = os.listdir\n"
        "os.listdir = lambda *a: calls.append(a) or real(*a)\n"
        "first = list(backends.list_of_moto_modules())\n"
        "list(backends.list_of_moto_modules())\n"
        "print(len(calls), 's3' in first, 'stepfunctions' in first)\n"
    )
    uncorrected = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert uncorrected.stdout.split() == ["2", "True", "True"]
    # WHEN corrected, THEN the same services, with no listing per call
    from moto import backends

    moto_compat.apply_corrections()
    listings = []
    real = os.listdir
    try:
        os.listdir = lambda *a: listings.append(a) or real(*a)  # type: ignore[assignment]
        services = list(backends.list_of_moto_modules())
        list(backends.list_of_moto_modules())
    finally:
        os.listdir = real
    assert listings == []
    assert {"s3", "stepfunctions", "logs"} <= set(services)

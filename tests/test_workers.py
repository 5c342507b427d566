"""The worker pool behaves like warm Lambda sandboxes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from groveflow.local.template import FunctionSpec
from groveflow.local.workers import WorkerPool

HANDLER = """
import os, sys, time
CALLS = []

def handler(event, context):
    CALLS.append(event)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("raise"):
        raise ValueError("bad value 42")
    if event.get("exit"):
        os._exit(3)
    if event.get("kill"):
        os.kill(os.getpid(), 9)
    if event.get("joblib"):
        import joblib
        from joblib import _multiprocessing_helpers
        serial = _multiprocessing_helpers.mp is None
        return {"n_jobs": joblib.effective_n_jobs(-1), "serial_mode": serial}
    return {"loaded": [m in sys.modules for m in event.get("modules", [])], "calls": len(CALLS), "env": os.environ.get("COLOUR"), "remaining_ms": context.get_remaining_time_in_millis()}
"""


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with_pool = WorkerPool(1, {"COLOUR": "base"})
    yield with_pool
    with_pool.close()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> FunctionSpec:
    directory: Path = tmp_path_factory.mktemp("fn")
    (directory / "app.py").write_text(HANDLER)
    return FunctionSpec(
        logical_id="Probe",
        function_name="test-Probe",
        code_dir=directory,
        handler="app.handler",
        environment={"COLOUR": "green"},
        timeout_seconds=2,
        memory_mb=256,
    )


def _call(pool: WorkerPool, spec: FunctionSpec, event: dict) -> tuple[dict, str | None]:
    outcome = pool.invoke(spec, json.dumps(event).encode())
    return json.loads(outcome.payload), outcome.error_type


def test_worker_stays_warm_and_sees_the_function_environment(
    pool: WorkerPool, spec: FunctionSpec
) -> None:
    first, _ = _call(pool, spec, {})
    second, _ = _call(pool, spec, {})
    assert second["calls"] == first["calls"] + 1
    assert second["env"] == "green"
    assert 0 < second["remaining_ms"] <= 2000


def test_exception_becomes_a_function_error_named_by_its_class(
    pool: WorkerPool, spec: FunctionSpec
) -> None:
    body, error = _call(pool, spec, {"raise": True})
    assert error == "ValueError"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad value 42"


def test_timeout_kills_and_replaces_the_worker(pool: WorkerPool, spec: FunctionSpec) -> None:
    body, error = _call(pool, spec, {"sleep": 30})
    assert error == "Sandbox.Timedout"
    assert "timed out after" in body["errorMessage"]
    fresh, error = _call(pool, spec, {})
    assert error is None and fresh["calls"] == 1  # a new, cold sandbox


def test_a_worker_that_dies_is_reported_and_replaced(pool: WorkerPool, spec: FunctionSpec) -> None:
    body, error = _call(pool, spec, {"exit": True})
    assert error == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    _, error = _call(pool, spec, {})
    assert error is None


def test_a_killed_worker_is_reported_as_lambda_reports_it(
    pool: WorkerPool, spec: FunctionSpec
) -> None:
    body, error = _call(pool, spec, {"kill": True})
    assert error == "Runtime.ExitError"
    assert body["errorMessage"].startswith("RequestId: ")
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")


def test_a_workers_first_invocation_is_cold_and_reports_its_init(spec: FunctionSpec) -> None:
    # GIVEN a fresh pool of one worker
    fresh = WorkerPool(1, {})
    try:
        # WHEN it serves the function three times, dying in the second
        first = fresh.invoke(spec, b"{}")
        fresh.invoke(spec, b'{"exit": true}')
        after_death = fresh.invoke(spec, b"{}")
        warm = fresh.invoke(spec, b"{}")
    finally:
        fresh.close()
    # THEN its first invocation, and the replacement's first, import the handler (cold)
    assert first.cold and first.init_ms is not None and first.init_ms > 0
    assert after_death.cold
    assert not warm.cold and warm.init_ms is None


def test_workers_run_joblib_without_multiprocessing_as_on_lambda(
    pool: WorkerPool, spec: FunctionSpec
) -> None:
    import os

    # GIVEN Lambda, where joblib finds no /dev/shm and runs serially
    # WHEN a handler asks joblib how many jobs -1 means
    body, error = _call(pool, spec, {"joblib": True})
    # THEN it says 1, whatever the cores, because joblib runs in serial mode (no
    # multiprocessing), as on Lambda; and this process's joblib setting is untouched
    assert error is None
    assert body == {"n_jobs": 1, "serial_mode": True}
    assert "JOBLIB_MULTIPROCESSING" not in os.environ


def test_a_pool_that_cannot_start_a_worker_says_so(
    spec: FunctionSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN worker processes that cannot be started
    from groveflow.local import workers

    def refuse(*_: object) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(workers._Worker, "__init__", refuse)
    broken = WorkerPool(1, {})
    # WHEN an invocation waits for a worker THEN it fails with the reason, not forever
    with pytest.raises(RuntimeError, match="could not start a worker: no more processes"):
        broken.invoke(spec, b"{}")
    broken.close()


def test_preloaded_modules_are_imported_before_the_first_invocation(spec: FunctionSpec) -> None:
    # GIVEN a pool of two workers preloading a module no handler imports
    warm = WorkerPool(2, {}, preload=("xml.dom.minidom",))
    try:
        # WHEN each worker answers its first invocation THEN the module was already there
        for _ in range(2):
            body, error = _call(warm, spec, {"modules": ["xml.dom.minidom"]})
            assert error is None and body["loaded"] == [True]
    finally:
        warm.close()


def test_every_outcome_states_the_workers_peak_memory(pool: WorkerPool, spec: FunctionSpec) -> None:
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("memory is measured from /proc (Linux)")
    # GIVEN a warm worker WHEN it returns, raises, and overruns its timeout
    returned = pool.invoke(spec, b"{}")
    raised = pool.invoke(spec, b'{"raise": true}')
    timed_out = pool.invoke(spec, b'{"sleep": 30}')
    # THEN each outcome states a peak, as each REPORT line does: an interpreter's at
    # least, within the function's 256 MB
    for outcome in (returned, raised, timed_out):
        assert outcome.max_memory_mb is not None and 5 <= outcome.max_memory_mb <= 256
    assert timed_out.error_type == "Sandbox.Timedout"

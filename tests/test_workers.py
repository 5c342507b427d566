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


# ------------------------------------------------------------------ as built

AS_BUILT_HANDLER = """
import json, os, sys
import layer_module

def handler(event, context):
    if event.get("exit"):
        os._exit(3)
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    if event.get("allocate_mb"):
        held = bytearray(event["allocate_mb"] * 1024 * 1024)
        held[::4096] = b"x" * len(held[::4096])
    try:
        import boto3
        boto3_file = boto3.__file__
    except ImportError as error:
        boto3_file = str(error)
    return {
        "version": list(sys.version_info[:2]),
        "executable": sys.executable,
        "path": sys.path,
        "pid": os.getpid(),
        "layer_module": layer_module.__file__,
        "boto3": boto3_file,
        "env": {name: os.environ.get(name) for name in ("COLOUR", "VIRTUAL_ENV", "PYTHONPATH", "LAMBDA_TASK_ROOT", "JOBLIB_MULTIPROCESSING")},
    }
"""


@pytest.fixture(scope="module")
def python312() -> str:
    from groveflow.local.workers import runtime_python

    python = runtime_python("python3.12")
    if python is None:
        pytest.skip("no python3.12 here (PATH, pyenv or PYTHON312) to run functions as built")
    return python


def _built_function(root: Path, name: str, handler: str = AS_BUILT_HANDLER) -> FunctionSpec:
    """A function as `sam build` lays one out: its code, and a layer holding layer_module."""
    code, layer = root / name, root / f"{name}Layer"
    code.mkdir(parents=True)
    (code / "app.py").write_text(handler)
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "layer_module.py").write_text("")
    return FunctionSpec(
        logical_id=name,
        function_name=f"test-{name}",
        code_dir=code,
        handler="app.handler",
        environment={"COLOUR": "blue"},
        timeout_seconds=30,
        memory_mb=512,
        layers=(layer,),
    )


def test_an_as_built_worker_runs_on_the_runtime_with_only_its_build_on_its_path(
    python312: str, tmp_path: Path
) -> None:
    import sysconfig

    # GIVEN a built function and a pool running functions as built on python3.12
    spec = _built_function(tmp_path, "Probe")
    built = WorkerPool(1, {"COLOUR": "base"}, python=python312)
    try:
        # WHEN it is invoked
        body, error = _call(built, spec, {})
    finally:
        built.close()
    # THEN it ran on python3.12, with the function's code, its layer's two directories, and
    # the interpreter's standard library on its path: not this venv, whose boto3 it lacks
    assert error is None, body
    assert body["version"] == [3, 12] and body["executable"] == python312
    layer = spec.layers[0] / "python"
    assert body["path"][:3] == [
        str(spec.code_dir),
        str(layer / "lib" / "python3.12" / "site-packages"),
        str(layer),
    ]
    prefix = body["executable"].rsplit("/bin/", 1)[0]
    assert all(entry.startswith(prefix) for entry in body["path"][3:]), body["path"]
    assert sysconfig.get_paths()["purelib"] not in body["path"]
    assert body["layer_module"] == str(layer / "layer_module.py")
    assert body["boto3"] == "No module named 'boto3'"
    assert body["env"] == {
        "COLOUR": "blue",
        "VIRTUAL_ENV": None,
        "PYTHONPATH": None,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "JOBLIB_MULTIPROCESSING": "0",
    }


def test_an_as_built_handler_that_cannot_import_fails_as_lambda_says(
    python312: str, tmp_path: Path
) -> None:
    # GIVEN a built handler that imports boto3, with no boto3 in its build
    handler = "import boto3\n\n\ndef handler(event, context):\n    return {}\n"
    spec = _built_function(tmp_path, "NeedsSdk", handler)
    built = WorkerPool(1, {}, python=python312)
    try:
        # WHEN it is invoked
        body, error = _call(built, spec, {})
    finally:
        built.close()
    # THEN it fails as Lambda's Python runtime fails it: this venv's boto3 is not there
    assert error == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'app': No module named 'boto3'"


def test_an_as_built_worker_serves_one_function_and_dies_as_a_sandbox_does(
    python312: str, tmp_path: Path
) -> None:
    # GIVEN two built functions and one as-built worker, logging to a file
    first, second = _built_function(tmp_path, "First"), _built_function(tmp_path, "Second")
    log = tmp_path / "functions.log"
    built = WorkerPool(1, {}, log_path=log, python=python312)
    try:
        # WHEN the first function runs twice, the second once, the first again, and the
        # second exits
        outcomes = [
            built.invoke(first, b"{}"),
            built.invoke(first, b"{}"),
            built.invoke(second, b"{}"),
            built.invoke(first, b"{}"),
            built.invoke(second, b'{"exit": true}'),
            built.invoke(second, b"{}"),
        ]
    finally:
        built.close()
    cold = [outcome.cold for outcome in outcomes]
    pids = [json.loads(outcome.payload).get("pid") for outcome in outcomes]
    # THEN the first stays warm in its own sandbox, the second gets another (cold), and the
    # first's is still warm after it, as Lambda keeps each function's sandboxes
    assert cold[:4] == [True, False, True, False]
    assert pids[0] == pids[1] == pids[3] != pids[2]
    # a worker that exits is reported as Lambda reports it, and replaced by a cold one
    assert outcomes[4].error_type == "Runtime.ExitError"
    assert json.loads(outcomes[4].payload)["errorMessage"].endswith("exit status 3")
    assert cold[5] and pids[5] not in pids[:4]
    # and the log says, for each cold start, where its packages came from
    lines = [
        json.loads(line.split(" ", 1)[1])
        for line in log.read_text().splitlines()
        if line.startswith("IMPORTS ")
    ]
    assert [line["function"] for line in lines] == ["First", "Second", "Second"]
    assert lines[0]["imported_from"] == {str(first.layers[0] / "python"): ["layer_module"]}


def test_an_as_built_worker_is_held_to_its_timeout_and_memory(
    python312: str, tmp_path: Path
) -> None:
    import dataclasses
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("memory is measured from /proc (Linux)")
    # GIVEN a built function of 128 MB and 1 s, on an as-built worker
    spec = dataclasses.replace(
        _built_function(tmp_path, "Bounded"), memory_mb=128, timeout_seconds=1
    )
    built = WorkerPool(1, {}, python=python312)
    try:
        # WHEN it overruns its time, then its memory, then runs within both
        slow = built.invoke(spec, b'{"sleep": 30}')
        greedy = built.invoke(spec, b'{"allocate_mb": 300}')
        fine = built.invoke(spec, b"{}")
    finally:
        built.close()
    # THEN the first two fail as Lambda fails them, and a fresh sandbox serves the third
    assert slow.error_type == "Sandbox.Timedout"
    assert greedy.error_type == "Runtime.OutOfMemory"
    assert greedy.max_memory_mb is not None and greedy.max_memory_mb > 128
    assert fine.error_type is None and fine.cold

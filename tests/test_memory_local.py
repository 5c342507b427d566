"""Memory is real locally: each invocation's peak is measured and its MemorySize enforced.

A worker's ``Max Memory Used`` is its resident memory's peak (children included), and a
worker over its function's ``MemorySize`` is killed and fails as Lambda's does, with
``Runtime.OutOfMemory``, through the pool, the Lambda service's REPORT lines and the
state machine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, unique_name
from groveflow.cost import parse_report_line
from groveflow.local.template import FunctionSpec, Stack
from groveflow.local.workers import Outcome, WorkerPool

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="memory is measured from /proc (Linux)"
)

HANDLER = """
import subprocess, sys, time
KEPT = []

def handler(event, context):
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
        if event.get("keep"):
            KEPT.append(block)
        del block
    if event.get("child_mb"):
        code = (
            f"b = bytearray({event['child_mb']} * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            "import time; time.sleep(0.3)"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"kept_mb": sum(len(b) for b in KEPT) // 2**20}
"""

TOLERANCE_MB = 12
"""Allowed difference between what a handler allocates and the growth of its peak."""


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory: Path = tmp_path_factory.mktemp("memory-fn")
    (directory / "app.py").write_text(HANDLER)
    return directory


def _spec(code_dir: Path, memory_mb: int, timeout_seconds: int = 30) -> FunctionSpec:
    return FunctionSpec(
        logical_id="Allocator",
        function_name="test-Allocator",
        code_dir=code_dir,
        handler="app.handler",
        environment={},
        timeout_seconds=timeout_seconds,
        memory_mb=memory_mb,
    )


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    fresh = WorkerPool(1, {})
    yield fresh
    fresh.close()


def _invoke(pool: WorkerPool, spec: FunctionSpec, event: dict[str, Any]) -> Outcome:
    return pool.invoke(spec, json.dumps(event).encode())


def _baseline_mb(pool: WorkerPool, code_dir: Path) -> int:
    """A warm worker's peak for an invocation that allocates nothing."""
    spec = _spec(code_dir, 10240)
    _invoke(pool, spec, {})  # cold: the handler's import
    peak = _invoke(pool, spec, {}).max_memory_mb
    assert peak is not None
    return peak


# ------------------------------------------------------------------ measured


def test_a_handler_allocating_n_mb_more_reports_n_mb_more(pool: WorkerPool, code_dir: Path) -> None:
    # GIVEN a warm worker's peak for an invocation that allocates nothing
    baseline = _baseline_mb(pool, code_dir)
    spec = _spec(code_dir, 10240)
    # WHEN invocations allocate 100 and 300 MB, freed before they return
    grown = {n: _invoke(pool, spec, {"allocate_mb": n}).max_memory_mb for n in (100, 300)}
    after = _invoke(pool, spec, {}).max_memory_mb
    # THEN each peak is the baseline plus what it allocated, and the next one's is back
    # to the baseline (the peak is reset between invocations)
    for allocated, peak in grown.items():
        assert peak is not None
        assert abs(peak - baseline - allocated) <= TOLERANCE_MB, (baseline, grown)
    assert after is not None and abs(after - baseline) <= TOLERANCE_MB


def test_memory_a_handler_keeps_counts_in_later_invocations(
    pool: WorkerPool, code_dir: Path
) -> None:
    # GIVEN a warm worker WHEN one invocation keeps 150 MB cached (as a warm Lambda may)
    baseline = _baseline_mb(pool, code_dir)
    spec = _spec(code_dir, 10240)
    _invoke(pool, spec, {"allocate_mb": 150, "keep": True})
    later = _invoke(pool, spec, {}).max_memory_mb
    # THEN the next invocation's peak includes it: it is the sandbox's memory
    assert later is not None and abs(later - baseline - 150) <= TOLERANCE_MB


def test_a_child_process_of_the_handler_counts(pool: WorkerPool, code_dir: Path) -> None:
    # GIVEN a warm worker WHEN its handler runs a child process that holds 200 MB
    baseline = _baseline_mb(pool, code_dir)
    peak = _invoke(pool, _spec(code_dir, 10240), {"child_mb": 200}).max_memory_mb
    # THEN the peak counts the child's memory (its 200 MB and its own interpreter)
    assert peak is not None
    assert 200 - TOLERANCE_MB <= peak - baseline <= 200 + 60, (baseline, peak)


def test_the_local_engines_report_lines_state_a_plausible_max_memory_used(engine: Any) -> None:
    # GIVEN the session's engine WHEN a small training run goes through the state machine
    run_id = unique_name("memory-report")
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2, "run_id": run_id}
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    # THEN each function's REPORT line states its peak: more than an interpreter with
    # numpy and scikit-learn (about 100 MB) and less than its 3,008 MB
    for function in ("PlanFunction", "BuildGroveFunction", "MergeFunction"):
        group = f"/aws/lambda/{engine.stack.functions[function].function_name}"
        events = engine.logs.filter_log_events(logGroupName=group)["events"]
        reports = [parse_report_line(e["message"]) for e in events]
        peaks = [r.max_memory_mb for r in reports if r is not None]
        assert peaks and all(p is not None and 60 <= p < 3008 for p in peaks), (
            function,
            [p for p in peaks if p is None or not 60 <= p < 3008],
        )
    # and the invocations record the same figures
    assert all(i.max_memory_mb and i.max_memory_mb >= 60 for i in result.invocations)


# ------------------------------------------------------------------ enforced


def test_a_worker_over_its_memory_fails_as_lambdas_out_of_memory_and_is_replaced(
    pool: WorkerPool, code_dir: Path
) -> None:
    # GIVEN a function given 100 MB more than a warm worker's own footprint
    limit = _baseline_mb(pool, code_dir) + 100
    spec = _spec(code_dir, limit)
    # WHEN its handler allocates 300 MB and holds it (far longer than a poll)
    outcome = _invoke(pool, spec, {"allocate_mb": 300, "sleep": 20})
    # THEN the worker is killed (not timed out: that would be Sandbox.Timedout) and the
    # invocation fails as Lambda's out-of-memory does, its peak over the limit
    body = json.loads(outcome.payload)
    assert outcome.error_type == "Runtime.OutOfMemory"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert body["errorMessage"].startswith("RequestId: ")
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert outcome.max_memory_mb is not None and outcome.max_memory_mb > limit
    # AND a new worker takes its place: the next invocation works, cold
    fresh = _invoke(pool, spec, {"allocate_mb": 20})
    assert fresh.error_type is None and fresh.cold
    assert fresh.max_memory_mb is not None and fresh.max_memory_mb <= limit


def test_a_spike_between_two_polls_is_still_out_of_memory(pool: WorkerPool, code_dir: Path) -> None:
    # GIVEN a monitor that never polls in time: only the peak read at the end can tell
    limit = _baseline_mb(pool, code_dir) + 100
    pool.memory.poll_seconds = 3600.0
    # WHEN a handler goes 200 MB over its limit and frees it before it returns
    outcome = _invoke(pool, _spec(code_dir, limit), {"allocate_mb": 300})
    # THEN the invocation failed out of memory all the same, as Lambda would have killed it
    assert outcome.error_type == "Runtime.OutOfMemory", outcome.payload
    assert outcome.max_memory_mb is not None and outcome.max_memory_mb >= limit + 150


def test_the_report_line_of_an_out_of_memory_invocation_names_it(
    pool: WorkerPool, code_dir: Path
) -> None:
    from groveflow.local.lambda_service import LambdaService

    # GIVEN the Lambda service serving one function of 100 MB over a worker's footprint
    limit = _baseline_mb(pool, code_dir) + 100
    spec = _spec(code_dir, limit)
    service = LambdaService(Stack(root=code_dir, functions={spec.logical_id: spec}), pool)
    # WHEN one invocation goes over it and the next does not
    over = service.invoke(spec.logical_id, b'{"allocate_mb": 300, "sleep": 20}')
    under = service.invoke(spec.logical_id, b'{"allocate_mb": 10}')
    # THEN the first's REPORT line ends as Lambda's does, with its peak; the second's is normal
    events = service.logs._backend().groups[f"/aws/lambda/{spec.function_name}"]
    lines = [e.message for stream in events.streams.values() for e in stream.events]
    assert over.error_type == "Runtime.OutOfMemory" and under.error_type is None
    first, second = (parse_report_line(line) for line in lines[-2:])
    assert lines[-2].endswith("\tStatus: error\tError Type: Runtime.OutOfMemory")
    assert first is not None and first.max_memory_mb is not None and first.max_memory_mb > limit
    assert second is not None and second.error_type is None and second.memory_mb == limit
    assert [i.max_memory_mb for i in service.invocations] == [
        first.max_memory_mb,
        second.max_memory_mb,
    ]


# ------------------------------------------------------------------ through the state machine


def _root_with_builders_of(tmp_path: Path, memory_mb: int) -> Path:
    """This application with the grove builders' MemorySize set to ``memory_mb`` (the
    plan's size guard still sees the template's BuilderMemorySize)."""
    root = tmp_path / "app"
    root.mkdir()
    for name in ("functions", "statemachine"):
        (root / name).symlink_to(ROOT / name)
    template = (ROOT / "template.yaml").read_text()
    builder = template.index("  BuildGroveFunction:\n")
    line = "      MemorySize: !Ref BuilderMemorySize\n"
    at = template.index(line, builder)
    (root / "template.yaml").write_text(
        template[:at] + f"      MemorySize: {memory_mb}\n" + template[at + len(line) :]
    )
    return root


def test_builders_over_their_memory_fail_the_run_at_build_groves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import groveflow
    from groveflow import console
    from groveflow.engines import Local

    # GIVEN grove builders given 64 MB, less than a worker's own footprint here
    root = _root_with_builders_of(tmp_path, 64)
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}
    # WHEN a run goes through the state machine
    with Local(workers=1, state_dir=tmp_path / "state", root=root) as engine:
        result = groveflow.train(request, engine=engine, run_id=unique_name("oom"))
    # THEN it fails at BuildGroves: every grove's attempt and its one retry ran out of memory
    assert result.status == "FAILED"
    assert result.error == "States.ExceedToleratedFailureThreshold", result.cause
    builders = result.memory["BuildGroves"]
    assert (builders.invocations, builders.out_of_memory) == (4, 4)
    assert builders.memory_mb == 64
    assert builders.max_memory_used_mb is not None and builders.max_memory_used_mb > 64
    assert "Merge" not in result.memory
    # AND the summary names the cause, with the figures
    console.emit(result, as_json=False)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("run failed: States.ExceedToleratedFailureThreshold")
    assert printed[1] == (
        "out of memory: BuildGroves (BuildGroveFunction): 4 of 4 invocations failed with "
        f"Runtime.OutOfMemory, peak {builders.max_memory_used_mb} MB over its MemorySize of "
        "64 MB; give BuildGroveFunction more memory"
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A small run on the application as it is, and its state directory."""
    import groveflow
    from groveflow.engines import Local

    state = tmp_path_factory.mktemp("memory-state")
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}
    with Local(workers=1, state_dir=state, root=ROOT) as engine:
        result = groveflow.train(request, engine=engine, run_id=unique_name("peaks"))
    assert result.succeeded, (result.error, result.cause)
    return result, state


def test_a_runs_summary_shows_each_stages_peak_against_its_memory(
    small_run: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from groveflow import console

    # GIVEN a small run of the application as it is
    result, _ = small_run
    # THEN each stage has its measured peak below its configured memory (the template's:
    # 1,769 MB builders, 3,008 MB plan and merge)
    assert list(result.memory) == ["Plan", "BuildGroves", "Merge"]
    configured = {"Plan": 3008, "BuildGroves": 1769, "Merge": 3008}
    for stage, use in result.memory.items():
        assert use.memory_mb == configured[stage] and use.out_of_memory == 0
        assert use.max_memory_used_mb is not None
        assert 60 <= use.max_memory_used_mb < use.memory_mb
    assert result.memory["BuildGroves"].invocations == 2
    # AND the printed summary and the JSON one show them
    console.emit(result, as_json=False)
    printed = capsys.readouterr().out
    for stage, use in result.memory.items():
        assert f"{stage:<17} {use.max_memory_used_mb} of {use.memory_mb} MB used" in printed
    first = next(line for line in printed.splitlines() if line.startswith("memory "))
    assert first.startswith("memory    Plan ")  # the block starts with the first stage
    summary = console.summary(result)
    assert summary["memory"]["Merge"]["max_memory_used_mb"] == (
        result.memory["Merge"].max_memory_used_mb
    )


def test_the_size_guards_estimate_is_set_beside_the_builders_peak(
    small_run: tuple[Any, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from groveflow import console
    from groveflow.catalog import DirPlace, write_run_report

    # GIVEN a small run, whose plan recorded its size guard's estimate of a builder
    result, state = small_run
    builders = result.memory["BuildGroves"]
    assert builders.estimate_mb is not None
    assert builders.estimate_mb >= 200  # the guard's interpreter baseline, at least
    # THEN the summary sets it beside the measured peak
    console.emit(result, as_json=False)
    assert (
        f"          BuildGroves       {builders.max_memory_used_mb} of 1769 MB used "
        f"(size guard's estimate {builders.estimate_mb} MB)"
    ) in capsys.readouterr().out
    # AND the run's report has a row per stage, the estimate in the builders'
    page = write_run_report(DirPlace(state), result.run_id, tmp_path / "report").read_text()
    section = page[page.index("<h2>Memory per stage</h2>") :]
    plan = result.memory["Plan"]
    assert (
        f'<tr><td>Plan</td><td>PlanFunction</td><td class="num">3008</td>'
        f'<td class="num">{plan.max_memory_used_mb}</td>'
    ) in section
    assert (
        f'<tr><td>BuildGroves</td><td>BuildGroveFunction</td><td class="num">1769</td>'
        f'<td class="num">{builders.max_memory_used_mb}</td>'
    ) in section
    assert f'<td class="num">{builders.estimate_mb}</td>' in section

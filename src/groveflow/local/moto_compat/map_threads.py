"""A Distributed Map Run's children on a few threads, one job after another: neither a thread per
child nor a recursion per item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "iterate_instead_of_recursing_in_map_workers",
    "run_map_children_on_bounded_threads",
    "set_map_child_threads",
]


def iterate_instead_of_recursing_in_map_workers() -> None:
    """Turn the tail recursion of the Map workers' ``_eval_pool`` into a loop.

    ``IterationWorker._eval_pool``, ``DistributedItemProcessorWorker._eval_pool`` and
    ``DistributedIteratorWorker._eval_pool`` end each job by calling themselves for
    the next one, so a worker dies with RecursionError near 1,000 items and the
    execution stays RUNNING forever. The wrapper runs the original once per job and
    defers its self-call (always its last statement) to a loop.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        iteration_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker as iterator_worker,
    )

    for cls in (
        iteration_worker.IterationWorker,
        processor_worker.DistributedItemProcessorWorker,
        iterator_worker.DistributedIteratorWorker,
    ):
        cls._eval_pool = _iterative(cls.__dict__["_eval_pool"])  # type: ignore[method-assign,assignment]


def _iterative(eval_pool: Callable[[Any, Any, Any], None]) -> Callable[[Any, Any, Any], None]:
    def run_jobs(worker: Any, job: Any, worker_frame: Any) -> None:
        pending: list[tuple[Any, Any]] | None = worker.__dict__.get("_groveflow_pending")
        if pending is not None:  # the self-call at the end of a job: run it from the loop
            pending.append((job, worker_frame))
            return
        worker._groveflow_pending = pending = [(job, worker_frame)]
        try:
            while pending:
                eval_pool(worker, *pending.pop())
        finally:
            del worker._groveflow_pending

    return run_jobs


_map_child_threads = {"limit": 8}  # set by set_map_child_threads


def set_map_child_threads(threads: int) -> int:
    """Run at most ``threads`` children of a Distributed Map Run at once, from now on.

    Parameters
    ----------
    threads : int
        At least 1; default 8. The local engine passes twice its worker count: a child
        invoking on each worker and one ready for each worker as soon as it is free.

    Returns
    -------
    int
        The limit it replaces.

    Raises
    ------
    ValueError
        If ``threads`` is below 1.
    """
    if threads < 1:
        raise ValueError(f"a Map Run needs at least one child thread, got threads={threads}")
    previous, _map_child_threads["limit"] = _map_child_threads["limit"], threads
    return previous


def run_map_children_on_bounded_threads() -> None:
    """Wrap ``DistributedIterationComponent._launch_worker`` and ``Program.eval``.

    moto's ``_map_run`` starts MaxConcurrency worker threads (one per item when it is
    0), and each child's program runs in a thread of its own that its worker joins with
    no timeout, beside the Task's ``TimeoutSeconds`` thread: at MaxConcurrency 1,000,
    3,000 threads, nearly all waiting for one of the local engine's few workers, contend
    for the GIL (minutes of system CPU in a 10,000-item Map). A Map Run now starts at most
    ``min(MaxConcurrency, threads)`` workers (:func:`set_map_child_threads`), each running
    its children one after another, and a program without a timeout runs in its caller's
    thread. No more children run at once than AWS allows, nor than the pool can serve;
    counts, results, failures and ``maxConcurrency`` are unchanged. Unlike AWS, a child
    waiting (Retry backoff, a Wait state) keeps its worker from starting another.
    """
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )

    map_cls = component.DistributedIterationComponent
    launch_worker = map_cls._launch_worker

    def _launch_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        launched = job_pool.__dict__.get("_groveflow_workers", 0)
        if launched >= _map_child_threads["limit"]:
            return None  # enough workers for this Map Run: they take the remaining items
        job_pool._groveflow_workers = launched + 1
        return launch_worker(self, env=env, eval_input=eval_input, job_pool=job_pool)

    map_cls._launch_worker = _launch_worker  # type: ignore[method-assign]
    program_eval = Program.eval

    def eval_in_callers_thread(self: Any, env: Any) -> None:
        if self.timeout_seconds is not None or not env.is_frame():
            program_eval(self, env)
            return
        env.next_state_name = self.start_at.start_at_name
        super(Program, self).eval(env)  # what moto's thread runs, joined without a timeout

    Program.eval = eval_in_callers_thread  # type: ignore[method-assign]

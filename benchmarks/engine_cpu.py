"""Where a warm local engine's seconds go on many small groves: its own CPU, its workers'.

``python benchmarks/engine_cpu.py [--groves N] [--repeats R]`` runs N one-tree groves
(``max_depth`` 3, iris) R times on one warm engine with 2 workers and prints, per grove:
the wall, the CPU of the engine's process (the interpreter, the S3 answers, the pool)
and of its workers (followed across renewals, from ``/proc``), and each state's seconds.
The engine's process holds one interpreter lock for every Map child, S3 request and
invocation: its CPU per grove bounds how fast groves can go whatever the cores. For a
profile of either side, ``py-spy record --gil --subprocesses -p PID`` while it runs (the
PID is printed first).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


class _WorkerCpu:
    """The CPU seconds of every worker the pool ever ran, sampled from ``/proc``."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.seconds: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.read()

    def read(self) -> float:
        for worker in list(self.pool._all):
            pid = worker.process.pid
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
        return sum(self.seconds.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _engine_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(engine: Any, n_groves: int, tag: str) -> Any:
    import groveflow

    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": {"max_depth": 3}},
        "n_trees": n_groves,
        "grove_size": 1,
        "max_concurrency": 100,
        "run_id": f"engine-cpu-{tag}-{time.time_ns()}",
    }
    result = groveflow.train(request, engine=engine)
    result.raise_for_status()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groves", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from groveflow import Local

    print(f"PID {os.getpid()}", flush=True)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, Local(workers=2, state_dir=Path(tmp)) as local:
        _run(local, 50, "warm")
        workers = _WorkerCpu(local.engine.pool)
        try:
            for repeat in range(args.repeats):
                engine_before, workers_before = _engine_cpu(), workers.read()
                started = time.perf_counter()
                result = _run(local, args.groves, str(repeat))
                wall = time.perf_counter() - started
                per_grove = 1000 / args.groves
                row = {
                    "wall": wall * per_grove,
                    "engine cpu": (_engine_cpu() - engine_before) * per_grove,
                    "workers cpu": (workers.read() - workers_before) * per_grove,
                    **{k: v * per_grove for k, v in result.phase_seconds.items() if v > 0.01},
                }
                rows.append(row)
                print(
                    f"repeat {repeat + 1}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
                    + " (ms a grove)",
                    flush=True,
                )
        finally:
            workers.close()
    medians = {k: statistics.median(row.get(k, 0.0) for row in rows) for k in rows[0]}
    print("median: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()) + " (ms a grove)")


if __name__ == "__main__":
    main()

"""On Lambda joblib runs serially (no /dev/shm for its semaphores): Merge still uses every vCPU."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import pytest

from conftest import unique_name
from groveflow.artifact import _forest as artifact
from groveflow.training import merge_run

SMALL = {"data": {"uri": "sklearn:wine"}, "n_trees": 8, "grove_size": 2, "seed": 3}


def test_merge_evaluates_on_every_vcpu_when_joblib_reports_no_multiprocessing(
    s3_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run whose groves are built, on a machine of 4 vCPUs where joblib, as on
    # Lambda, reports no multiprocessing (effective_n_jobs(-1) == 1)
    run_id = unique_name("threads")
    built = s3_env.run("TrainStateMachine", {**SMALL, "run_id": run_id}, name=run_id)
    assert built.status == "SUCCEEDED", (built.error, built.cause)
    monkeypatch.setattr(joblib, "effective_n_jobs", lambda n_jobs=-1: 1)
    monkeypatch.setattr(joblib.parallel, "effective_n_jobs", lambda n_jobs=-1: 1)
    monkeypatch.setattr(artifact.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert joblib.effective_n_jobs(-1) == 1
    pools: list[int] = []

    class CountingPool(ThreadPoolExecutor):
        def __init__(self, max_workers: int | None = None, *args: Any, **kwargs: Any) -> None:
            pools.append(max_workers or 0)
            super().__init__(max_workers, *args, **kwargs)

    monkeypatch.setattr(artifact, "ThreadPoolExecutor", CountingPool)
    # WHEN Merge runs again on them
    merged = merge_run({"run_id": run_id}, bucket=s3_env.bucket)
    # THEN it evaluated the forest on 4 threads, and its metrics are the engine's run's
    assert pools and max(pools) == 4
    assert merged["metrics"] == built.output["metrics"]


@pytest.mark.parametrize(
    ("n_jobs", "threads"), [(None, 1), (0, 1), (1, 1), (3, 3), (-1, 4), (-2, 3), (-9, 1)]
)
def test_threads_are_counted_as_scikit_learn_counts_jobs_from_the_cpus_we_may_use(
    n_jobs: int | None, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifact.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert artifact.n_threads_for(n_jobs) == threads

"""The local engine's own cost, against Dask and scikit-learn measured in the same run.

Prints, in one run (``python benchmarks/train.py``; needs ``dask[distributed]``):

1. **Per-grove overhead**: 1,000 one-tree groves (``max_depth`` 3, iris) on a warm engine
   with 2 workers, against Dask's ``LocalCluster`` (2 workers of one thread: scatter the
   rows, submit the same 1,000 seeded fits, gather them) and scikit-learn fitting the
   same 1,000 trees in one process; wall per grove, and that less scikit-learn's per tree.
   Target: groveflow's at most Dask's.
2. **A warm ``cross_val_score``** on breast_cancer with 100 trees, ``cv=3``: a
   ``GroveForestClassifier`` on a warm engine against ``RandomForestClassifier(n_jobs=2)``.
   Target: at most 1.5x.
3. **A full-reuse refit**: the same run again, every grove stored, against a fresh fit of
   the same request (20,000 x 50, 64 trees in 8 groves). Target: at most a quarter.
4. **The 100k x 50 / 64-tree fit**: ``groveflow train`` (its own engine) and the same on a
   warm ``groveflow serve``, against ``RandomForestClassifier(n_jobs=2)`` plus saving it.
   Target: at most 1.05.
5. **10,000 groves at max_concurrency 1,000**: ``groveflow train``'s BuildGroves per
   grove. Target: at most 10 ms.

Every comparison is interleaved (the sides alternate, rotating which goes first) and
repeated; each repeat's ratio is printed, then the median and the range. The machine's
other load moves both sides of a pair alike, not the sides of different pairs.
Usage: ``python benchmarks/train.py [--repeats N] [--rows N] [--only 1,2,3,4,5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TREE = {"max_depth": 3}  # the trivial grove of the overhead comparison


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=rows, n_features=50, n_informative=20, n_classes=5, random_state=0
    )
    return X.astype(np.float32), y


def _interleaved(
    sides: dict[str, Callable[[], float]], repeats: int, label: str
) -> dict[str, list[float]]:
    """Run each side ``repeats`` times, alternating and rotating which goes first."""
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            seconds[name].append(sides[name]())
        line = ", ".join(f"{name} {seconds[name][-1]:.3f} s" for name in names)
        print(f"  {label} repeat {repeat + 1}: {line}", flush=True)
    return seconds


def _ratio_line(name: str, seconds: list[float], baseline: list[float], target: str) -> str:
    ratios = [s / b for s, b in zip(seconds, baseline, strict=True)]
    return (
        f"  {name}: median ratio {float(np.median(ratios)):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f}; target {target})"
    )


# ----------------------------------------------------------------- 1. per-grove overhead


def _sklearn_trees(X: np.ndarray, y: np.ndarray, n: int) -> float:
    from sklearn.ensemble import RandomForestClassifier

    started = time.perf_counter()
    RandomForestClassifier(n_estimators=n, random_state=0, **TREE).fit(X, y)
    return (time.perf_counter() - started) / n


def _fit_one_tree(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=1, random_state=seed, **TREE).fit(X, y)


def _dask_groves(client: Any, X: np.ndarray, y: np.ndarray, n: int) -> float:
    started = time.perf_counter()
    X_, y_ = client.scatter([X, y], broadcast=True)
    futures = [client.submit(_fit_one_tree, X_, y_, seed, pure=False) for seed in range(n)]
    client.gather(futures)
    return (time.perf_counter() - started) / n


def _groveflow_groves(engine: Any, n: int, tag: str) -> float:
    import groveflow

    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": TREE},
        "n_trees": n,
        "grove_size": 1,
        "max_concurrency": 100,
        "run_id": f"overhead-{tag}-{time.time_ns()}",
    }
    started = time.perf_counter()
    groveflow.train(request, engine=engine).raise_for_status()
    return (time.perf_counter() - started) / n


def per_grove_overhead(engine: Any, n_groves: int, repeats: int) -> None:
    from dask.distributed import Client, LocalCluster
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    print(f"\n1. {n_groves:,} one-tree groves (max_depth 3, iris), 2 workers, warm")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        _dask_groves(client, X, y, 50)  # warm: workers up, scikit-learn imported
        _groveflow_groves(engine, 50, "warm")
        seconds = _interleaved(
            {
                "groveflow": lambda: _groveflow_groves(engine, n_groves, "g"),
                "dask": lambda: _dask_groves(client, X, y, n_groves),
                "sklearn": lambda: _sklearn_trees(X, y, n_groves),
            },
            repeats,
            "per grove",
        )
    floor = float(np.median(seconds["sklearn"]))
    for name in ("groveflow", "dask"):
        wall = float(np.median(seconds[name]))
        print(
            f"  {name:<9} {1000 * wall:6.2f} ms a grove, overhead {1000 * (wall - floor):6.2f} ms"
            f" (scikit-learn {1000 * floor:.2f} ms a tree)"
        )
    print(_ratio_line("groveflow / dask per grove", seconds["groveflow"], seconds["dask"], "<= 1"))


# ----------------------------------------------------------------- 2. cross_val_score


def cross_validation(engine: Any, repeats: int) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    from groveflow import GroveForestClassifier

    X, y = load_breast_cancer(return_X_y=True)
    print("\n2. cross_val_score(cv=3) on breast_cancer, 100 trees, warm engine")
    GroveForestClassifier(n_trees=100, random_state=1, engine=engine).fit(X, y)  # warm

    def timed(estimator: Any) -> float:
        started = time.perf_counter()
        cross_val_score(estimator, X, y, cv=3)
        return time.perf_counter() - started

    seeds = iter(range(100, 10_000))
    seconds = _interleaved(
        {
            "groveflow": lambda: timed(
                GroveForestClassifier(n_trees=100, random_state=next(seeds), engine=engine)
            ),
            "sklearn": lambda: timed(
                RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0)
            ),
        },
        repeats,
        "cross_val_score",
    )
    print(
        _ratio_line(
            "groveflow / RandomForestClassifier(n_jobs=2)",
            seconds["groveflow"],
            seconds["sklearn"],
            "<= 1.5",
        )
    )


# ----------------------------------------------------------------- 3. full reuse


def full_reuse(engine: Any, directory: Path, repeats: int) -> None:
    import groveflow

    X, y = _data(20_000)
    path = directory / "reuse.npz"
    np.savez(path, X=X, y=y)
    print("\n3. a refit whose every grove is stored, against a fresh fit (20,000 x 50, 64 trees)")

    def fit(run_id: str) -> float:
        request = {"data": {"uri": str(path)}, "n_trees": 64, "grove_size": 8, "seed": 0}
        started = time.perf_counter()
        groveflow.train({**request, "run_id": run_id}, engine=engine).raise_for_status()
        return time.perf_counter() - started

    fit("reuse-stored")
    seconds = _interleaved(
        {
            "reuse": lambda: fit("reuse-stored"),
            "fresh": lambda: fit(f"reuse-fresh-{time.time_ns()}"),
        },
        repeats,
        "refit",
    )
    print(_ratio_line("full reuse / fresh fit", seconds["reuse"], seconds["fresh"], "<= 0.25"))


# ----------------------------------------------------------------- 4. 100k x 50


def _sklearn_baseline(X: np.ndarray, y: np.ndarray, directory: Path) -> float:
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    forest = RandomForestClassifier(n_estimators=64, n_jobs=2, random_state=0).fit(X_train, y_train)
    joblib.dump(forest, directory / "sklearn-forest.joblib")
    return time.perf_counter() - started


def _command(request: dict, directory: Path, endpoint: str | None = None) -> tuple[float, dict]:
    """One ``groveflow train`` command: its own engine, or a warm one at ``endpoint``."""
    path = directory / f"{request['run_id']}.json"
    path.write_text(json.dumps(request))
    command = [sys.executable, "-m", "groveflow.cli", "train", str(path), "--json"]
    if endpoint is None:
        command += ["--workers", "2", "--state-dir", str(directory / "state")]
    else:
        command += ["--endpoint-url", endpoint]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"groveflow train failed:\n{completed.stdout}\n{completed.stderr}")
    return seconds, json.loads(completed.stdout)


@contextlib.contextmanager
def _served(directory: Path) -> Iterator[str]:
    """``groveflow serve`` (a warm engine, 2 workers) for the duration; yields its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "groveflow.cli", "serve", "--port", str(port)]
    command += ["--workers", "2", "--state-dir", str(directory / "served")]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("Ctrl-C"):
            break
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def large_fit(directory: Path, rows: int, repeats: int) -> None:
    X, y = _data(rows)
    np.savez(directory / "data.npz", X=X, y=y)
    print(f"\n4. make_classification {rows:,} x 50 float32, 5 classes; 64 trees in 8 groves")
    summaries: dict[str, dict] = {}

    def run(side: str, endpoint: str | None = None) -> float:
        request = {
            "data": {"uri": str(directory / "data.npz")},
            "n_trees": 64,
            "grove_size": 8,
            "seed": 0,
            "test_fraction": 0.2,
            "run_id": f"bench-{side}-{time.time_ns()}",
        }
        seconds, summaries[side] = _command(request, directory, endpoint)
        return seconds

    with _served(directory) as endpoint:
        seconds = _interleaved(
            {
                "sklearn": functools.partial(_sklearn_baseline, X, y, directory),
                "command": functools.partial(run, "command"),
                "warm serve": functools.partial(run, "warm", endpoint),
            },
            repeats,
            "100k fit",
        )
    print(_ratio_line("groveflow train / fit + save", seconds["command"], seconds["sklearn"], "-"))
    print(
        _ratio_line(
            "groveflow on a warm serve / fit + save",
            seconds["warm serve"],
            seconds["sklearn"],
            "<= 1.05",
        )
    )
    phases = summaries["command"]["phases"]
    print("  groveflow's states: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))


# ----------------------------------------------------------------- 5. 10,000 groves


def many_groves(directory: Path, n_groves: int, max_concurrency: int) -> None:
    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": {"max_depth": 1}},
        "n_trees": n_groves,
        "grove_size": 1,
        "max_concurrency": max_concurrency,
        "run_id": f"scale-{time.time_ns()}",
    }
    seconds, summary = _command(request, directory)
    phases = summary["phases"]
    print(
        f"\n5. groveflow train, {n_groves:,} trivial groves at max_concurrency "
        f"{max_concurrency:,}, 2 workers: {seconds:.1f} s"
    )
    build_ms = 1000 * phases["BuildGroves"] / n_groves
    print(f"  BuildGroves {build_ms:6.2f} ms per grove (target <= 10)")
    print(f"  whole command {1000 * seconds / n_groves:6.2f} ms per grove")
    print(f"  Plan {phases['Plan']:.2f} s, Merge {phases['Merge']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--groves", type=int, default=1000)
    parser.add_argument("--many-groves", type=int, default=10_000)
    parser.add_argument("--max-concurrency", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each")
    parser.add_argument("--only", default="1,2,3,4,5", help="which comparisons, e.g. 1,3")
    args = parser.parse_args()
    only = {int(part) for part in args.only.split(",")}
    from groveflow import Local

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if only & {1, 2, 3}:
            with Local(workers=2, state_dir=directory / "warm") as engine:
                if 1 in only:
                    per_grove_overhead(engine, args.groves, args.repeats)
                if 2 in only:
                    cross_validation(engine, args.repeats)
                if 3 in only:
                    full_reuse(engine, directory, args.repeats)
        if 4 in only:
            large_fit(directory, args.rows, args.repeats)
        if 5 in only:
            many_groves(directory, args.many_groves, args.max_concurrency)


if __name__ == "__main__":
    main()

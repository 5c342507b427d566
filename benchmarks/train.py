"""groveflow train on the local engine vs scikit-learn in one process, on the same data.

Prints, in one run: wall time of ``groveflow train`` (2 workers) vs
``RandomForestClassifier(n_estimators=64, n_jobs=2).fit`` plus saving the model,
their ratio and both holdout accuracies, for a command that starts its own engine
(cold) and one run on a warm ``groveflow serve`` (``--endpoint-url``); then the
engine's per-grove overhead with 1,000 trivial groves.
Usage: ``python benchmarks/train.py [--rows N] [--repeats N] [--groves N]``.

``--groves 10000 --max-concurrency 1000`` instead times ``groveflow train`` of 10,000
trivial groves at max_concurrency 1,000 (BuildGroves and the whole command per grove,
Merge's seconds), next to the overhead run of 1,000 groves as the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
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


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=rows, n_features=50, n_informative=20, n_classes=5, random_state=0
    )
    return X.astype(np.float32), y


def _sklearn_baseline(X: np.ndarray, y: np.ndarray, directory: Path) -> tuple[float, float]:
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    forest = RandomForestClassifier(n_estimators=64, n_jobs=2, random_state=0).fit(X_train, y_train)
    joblib.dump(forest, directory / "sklearn-forest.joblib")
    seconds = time.perf_counter() - started
    return seconds, float(forest.score(X_test, y_test))


def _groveflow(
    request: dict, directory: Path, workers: int, endpoint: str | None = None
) -> tuple[float, dict]:
    """One ``groveflow train`` command: a fresh engine, or a warm one at ``endpoint``."""
    path = directory / f"{request['run_id']}.json"
    path.write_text(json.dumps(request))
    command = [sys.executable, "-m", "groveflow.cli", "train", str(path), "--json"]
    if endpoint is None:
        command += ["--workers", str(workers), "--state-dir", str(directory / "state")]
    else:
        command += ["--endpoint-url", endpoint]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"groveflow train failed:\n{completed.stdout}\n{completed.stderr}")
    return seconds, json.loads(completed.stdout)


@contextlib.contextmanager
def _served(directory: Path, workers: int) -> Iterator[str]:
    """``groveflow serve`` (a warm engine) for the duration; yields its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "groveflow.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--state-dir", str(directory / "served")]
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


def _overhead(directory: Path, n_groves: int) -> float:
    """Per-grove engine overhead: worker time not spent in handlers, per grove.

    Returns the map phase's wall time per grove, in milliseconds.
    """
    from groveflow.local import LocalEngine

    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": {"max_depth": 1}},
        "n_trees": n_groves,
        "grove_size": 1,
        "max_concurrency": 100,
        "run_id": f"overhead-{int(time.time())}",
    }
    with LocalEngine(ROOT, workers=2, state_dir=directory / "state") as engine:
        result = engine.run("TrainStateMachine", request, name=request["run_id"])
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        events = engine.history(result.execution_arn)
    stamps = {e["type"]: e["timestamp"] for e in events}
    map_seconds = (stamps["MapStateExited"] - stamps["MapStateEntered"]).total_seconds()
    groves = [i for i in result.invocations if i.function == "BuildGroveFunction"]
    handler_seconds = sum(i.duration_ms for i in groves) / 1000
    per_grove_ms = 1000 * (map_seconds * 2 - handler_seconds) / len(groves)
    print(
        f"\n{len(groves)} trivial groves, 2 workers: map phase {map_seconds:.2f} s "
        f"({1000 * map_seconds / len(groves):.2f} ms wall per grove)"
    )
    print(f"  time inside handlers        {1000 * handler_seconds / len(groves):6.2f} ms per grove")
    print(
        f"  engine overhead per grove   {per_grove_ms:6.2f} ms "
        "(worker time outside handlers; target <= 10)"
    )
    return 1000 * map_seconds / len(groves)


def _scale(directory: Path, n_groves: int, max_concurrency: int, baseline_ms: float) -> None:
    """``groveflow train`` of ``n_groves`` trivial groves at ``max_concurrency``, 2 workers.

    ``baseline_ms`` is the map phase's wall time per grove of the overhead run (1,000
    groves at max_concurrency 100) measured before, in the same run.
    """
    request = {
        "data": {"uri": "sklearn:iris"},
        "model": {"params": {"max_depth": 1}},
        "n_trees": n_groves,
        "grove_size": 1,
        "max_concurrency": max_concurrency,
        "run_id": f"scale-{int(time.time())}",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, summary = _groveflow(request, directory, workers=2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    phases = summary["phases"]
    build_ms = 1000 * phases["BuildGroves"] / n_groves
    print(
        f"\ngroveflow train, {n_groves:,} trivial groves at max_concurrency "
        f"{max_concurrency:,}, 2 workers: {seconds:.1f} s"
    )
    print(
        f"  the command's process used {after.ru_utime - before.ru_utime:.1f} s of user CPU, "
        f"{after.ru_stime - before.ru_stime:.1f} s of system CPU"
    )
    print(f"  BuildGroves                 {build_ms:6.2f} ms per grove (target <= 10)")
    whole_ms = 1000 * seconds / n_groves
    print(f"  whole command               {whole_ms:6.2f} ms per grove (target <= 15)")
    print(f"  Merge                       {phases['Merge']:6.2f} s")
    print(
        f"  BuildGroves per grove / the overhead run's map wall per grove: "
        f"{build_ms / baseline_ms:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--groves", type=int, default=1000, help="trivial groves for the overhead test"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved pairs; the median of each is compared"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="instead of the comparison with scikit-learn: groveflow train of --groves trivial "
        "groves at this max_concurrency, next to the overhead run of 1,000 groves",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if args.max_concurrency is not None:
            baseline_ms = _overhead(directory, 1000)
            _scale(directory, args.groves, args.max_concurrency, baseline_ms)
            return
        X, y = _data(args.rows)
        np.savez(directory / "data.npz", X=X, y=y)
        sides: dict[str, list[tuple[float, Any]]] = {"sklearn": [], "cold": [], "warm": []}
        with _served(directory, workers=2) as endpoint:
            # Interleaved, rotating which side goes first, so a noisy neighbour or a drifting
            # machine slows every side alike; medians and per-repeat ratios are compared.
            for repeat in range(args.repeats):
                request: dict[str, Any] = {
                    "data": {"uri": str(directory / "data.npz")},
                    "n_trees": 64,
                    "grove_size": 8,
                    "seed": 0,
                    "test_fraction": 0.2,
                    "run_id": f"bench-{int(time.time())}-{repeat}",
                }
                warm = {**request, "run_id": request["run_id"] + "-warm"}
                run: dict[str, Callable[[], tuple[float, Any]]] = {
                    "sklearn": functools.partial(_sklearn_baseline, X, y, directory),
                    "cold": functools.partial(_groveflow, request, directory, 2),
                    "warm": functools.partial(_groveflow, warm, directory, 2, endpoint),
                }
                order = list(run)[repeat % 3 :] + list(run)[: repeat % 3]
                for side in order:
                    sides[side].append(run[side]())
                seconds = {side: sides[side][-1][0] for side in run}
                print(
                    f"  repeat {repeat + 1}: scikit-learn {seconds['sklearn']:6.2f} s, "
                    f"groveflow {seconds['cold']:6.2f} s (ratio "
                    f"{seconds['cold'] / seconds['sklearn']:.3f}), on a warm engine "
                    f"{seconds['warm']:6.2f} s ({seconds['warm'] / seconds['sklearn']:.3f})",
                    flush=True,
                )
        median = {side: float(np.median([s for s, _ in runs])) for side, runs in sides.items()}
        print(f"make_classification {args.rows:,} x 50 float32, 5 classes; 64 trees in 8 groves")
        print(f"median of {args.repeats} interleaved runs each")
        print(
            f"  {'scikit-learn fit(n_jobs=2) + save':<34} {median['sklearn']:7.2f} s  "
            f"acc {sides['sklearn'][-1][1]:.4f}"
        )
        labels = {
            "cold": "groveflow train --workers 2",
            "warm": "groveflow train on a warm serve",
        }
        for side, label in labels.items():
            summary = sides[side][-1][1]
            pairs = [g / b for (g, _), (b, _) in zip(sides[side], sides["sklearn"], strict=True)]
            print(
                f"  {label:<34} {median[side]:7.2f} s  acc {summary['metrics']['accuracy']:.4f}  "
                f"ratio {median[side] / median['sklearn']:.3f} (median of repeats "
                f"{float(np.median(pairs)):.3f}; target <= 1.10)"
            )
        phases = sides["cold"][-1][1]["phases"]
        print("  groveflow's states: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
        _overhead(directory, args.groves)


if __name__ == "__main__":
    main()

"""groveflow train on the local engine vs scikit-learn in one process, on the same data.

Prints, in one run: wall time of ``groveflow train`` (2 workers) vs
``RandomForestClassifier(n_estimators=64, n_jobs=2).fit`` plus saving the model,
their ratio and both holdout accuracies; then the engine's per-grove overhead
with 1,000 trivial groves. Usage: ``python benchmarks/train.py [--rows N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _groveflow(request: dict, directory: Path, workers: int) -> tuple[float, dict]:
    path = directory / f"{request['run_id']}.json"
    path.write_text(json.dumps(request))
    command = [sys.executable, "-m", "groveflow.cli", "train", str(path), "--json"]
    command += ["--workers", str(workers), "--state-dir", str(directory / "state")]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"groveflow train failed:\n{completed.stdout}\n{completed.stderr}")
    return seconds, json.loads(completed.stdout)


def _overhead(directory: Path, n_groves: int) -> None:
    """Per-grove engine overhead: worker time not spent in handlers, per grove."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--groves", type=int, default=1000, help="trivial groves for the overhead test"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved pairs; the median of each is compared"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        X, y = _data(args.rows)
        np.savez(directory / "data.npz", X=X, y=y)
        baselines, runs = [], []
        # Interleaved pairs, alternating which side goes first, so a noisy neighbour or a
        # drifting machine slows both sides alike; medians and per-pair ratios are compared.
        for repeat in range(args.repeats):
            request = {
                "data": {"uri": str(directory / "data.npz")},
                "n_trees": 64,
                "grove_size": 8,
                "seed": 0,
                "test_fraction": 0.2,
                "run_id": f"bench-{int(time.time())}-{repeat}",
            }
            if repeat % 2 == 0:
                baselines.append(_sklearn_baseline(X, y, directory))
                runs.append(_groveflow(request, directory, workers=2))
            else:
                runs.append(_groveflow(request, directory, workers=2))
                baselines.append(_sklearn_baseline(X, y, directory))
            pair = runs[-1][0] / baselines[-1][0]
            print(
                f"  pair {repeat + 1}: scikit-learn {baselines[-1][0]:6.2f} s, "
                f"groveflow {runs[-1][0]:6.2f} s, ratio {pair:.3f}",
                flush=True,
            )
        baseline_seconds = float(np.median([seconds for seconds, _ in baselines]))
        groveflow_seconds = float(np.median([seconds for seconds, _ in runs]))
        pair_ratio = float(np.median([r[0] / b[0] for r, b in zip(runs, baselines, strict=True)]))
        summary = runs[-1][1]
        ratio = groveflow_seconds / baseline_seconds
        print(f"make_classification {args.rows:,} x 50 float32, 5 classes; 64 trees in 8 groves")
        print(f"median of {args.repeats} interleaved runs each")
        baseline = f"{baseline_seconds:7.2f} s  acc {baselines[-1][1]:.4f}"
        print(f"  scikit-learn fit(n_jobs=2) + save {baseline}")
        accuracy = summary["metrics"]["accuracy"]
        print(f"  groveflow train --workers 2       {groveflow_seconds:7.2f} s  acc {accuracy:.4f}")
        print(f"  ratio groveflow / scikit-learn    {ratio:7.3f}  (target <= 1.10)")
        print(f"  median of the pairs' ratios       {pair_ratio:7.3f}")
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in summary["phases"].items())
        print(f"  groveflow's states: {phases}")
        _overhead(directory, args.groves)


if __name__ == "__main__":
    main()

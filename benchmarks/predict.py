"""Distributed predict on the local engine vs ``load_forest(...).predict_proba`` in one process.

Prints rows per second of both on the same rows, and their ratio. The data: a forest
trained by groveflow on ``make_classification`` (20,000 x 20 float32, 4 classes, 32
trees), then 200,000 rows to score, as a prefix of ``.npy`` files (one per shard).
Usage: ``python benchmarks/predict.py [--rows N] [--files K] [--workers W]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from sklearn.datasets import make_classification

    from groveflow.artifact import load_forest
    from groveflow.local import LocalEngine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    X, y = make_classification(
        n_samples=20_000 + args.rows, n_features=20, n_informative=10, n_classes=4, random_state=0
    )
    X = X.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        np.savez(directory / "train.npz", X=X[:20_000], y=y[:20_000])
        score_dir = directory / "score"
        score_dir.mkdir()
        for number, part in enumerate(np.array_split(X[20_000:], args.files)):
            np.save(score_dir / f"part-{number:04d}.npy", part)
        with LocalEngine(ROOT, workers=args.workers, state_dir=directory / "state") as engine:
            train = {"data": {"uri": str(directory / "train.npz")}, "n_trees": 32, "grove_size": 4}
            trained = engine.run(
                "TrainStateMachine", train, name="bench-model", run_id="bench-model"
            )
            assert trained.status == "SUCCEEDED", (trained.error, trained.cause)
            forest_dir = engine.run_dir("bench-model") / "model"

            started = time.perf_counter()
            forest = load_forest(str(forest_dir))
            parts = [np.load(p) for p in sorted(score_dir.glob("*.npy"))]
            proba = forest.predict_proba(np.vstack(parts))
            local_seconds = time.perf_counter() - started

            request = {
                "model": "bench-model",
                "data": {"uri": str(score_dir)},
                "shard_rows": -(-args.rows // args.files),
                "probabilities": True,
            }
            scored = engine.run(
                "PredictStateMachine", request, name="bench-scores", run_id="bench-scores"
            )
            assert scored.status == "SUCCEEDED", (scored.error, scored.cause)
    assert proba.shape[0] == args.rows
    single = args.rows / local_seconds
    distributed = args.rows / scored.seconds
    print(f"{args.rows:,} rows x 20 features, 32-tree forest, {args.files} files/shards")
    print(
        f"  load_forest + predict_proba, one process {single:12,.0f} rows/s ({local_seconds:.2f} s)"
    )
    print(
        f"  distributed predict, {args.workers} workers (local)    {distributed:12,.0f} rows/s "
        f"({scored.seconds:.2f} s, CSV parts with probabilities)"
    )
    print(f"  ratio distributed / one process             {distributed / single:12.3f}")


if __name__ == "__main__":
    main()

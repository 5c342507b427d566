"""The forest artifact vs a joblib pickle of the same scikit-learn forest, in one run.

For a 64-tree RandomForestClassifier on make_classification (80,000 x 50 float32, 5 classes)
and on scikit-learn's digits, prints side by side:

- bytes on disk: ``forest.gfa`` vs ``joblib.dump`` (target: ratio <= 0.2);
- load time: ``load_forest`` (reads, checks the sha256, validates every index) vs
  ``joblib.load`` (target: >= 10x faster), and the same plus building the scikit-learn trees,
  which the artifact otherwise does on first prediction;
- ``predict_proba`` on 20,000 rows, both on one thread (target: ratio >= 1.0), and the largest
  difference between the two (must be 0); then both on 2 threads (``n_jobs=2``).

Times are medians of interleaved repeats. Usage: ``python benchmarks/artifact.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.ensemble import RandomForestClassifier

from groveflow.artifact import encode_trees, load_forest

PREDICT_ROWS = 20_000


def _datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X, y = make_classification(
        n_samples=80_000, n_features=50, n_informative=20, n_classes=5, random_state=0
    )
    digits = load_digits()
    return {
        "make_classification 80000x50": (X.astype(np.float32), y),
        "digits 1797x64": (digits.data.astype(np.float32), digits.target),
    }


def _median_seconds(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each call, the calls interleaved so load drifts hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _eager_load(path: Path, X: np.ndarray) -> None:
    load_forest(str(path)).predict_proba(X[:1])


def _compare(name: str, X: np.ndarray, y: np.ndarray, directory: Path, repeats: int) -> None:
    forest = RandomForestClassifier(n_estimators=64, random_state=0, n_jobs=-1).fit(X, y)
    forest.set_params(n_jobs=1)
    pickle_path = directory / "forest.joblib"
    artifact_path = directory / "forest.gfa"
    joblib.dump(forest, pickle_path)
    blob = encode_trees(forest.estimators_, n_features=X.shape[1], classes=forest.classes_)
    artifact_path.write_bytes(blob)
    rows = X[np.arange(PREDICT_ROWS) % len(X)]
    ours = load_forest(str(artifact_path))
    difference = np.abs(ours.predict_proba(rows) - forest.predict_proba(rows)).max()

    loads = _median_seconds(
        {
            "joblib": lambda: joblib.load(pickle_path),
            "lazy": lambda: load_forest(str(artifact_path)),
            "eager": lambda: _eager_load(artifact_path, X),
        },
        repeats,
    )
    predicts = _median_seconds(
        {"sklearn": lambda: forest.predict_proba(rows), "ours": lambda: ours.predict_proba(rows)},
        repeats,
    )
    forest.set_params(n_jobs=2)
    ours.n_jobs = 2
    threaded = _median_seconds(
        {"sklearn": lambda: forest.predict_proba(rows), "ours": lambda: ours.predict_proba(rows)},
        repeats,
    )
    nodes = sum(tree.tree_.node_count for tree in forest.estimators_)
    size_ratio = artifact_path.stat().st_size / pickle_path.stat().st_size
    print(f"== {name}: 64 trees, {nodes:,} nodes")
    print(
        f"size     joblib {pickle_path.stat().st_size / 1e6:8.2f} MB   artifact "
        f"{artifact_path.stat().st_size / 1e6:8.2f} MB   ratio {size_ratio:.3f}  (target <= 0.2)"
    )
    print(
        f"load     joblib {loads['joblib'] * 1e3:8.1f} ms   artifact "
        f"{loads['lazy'] * 1e3:8.1f} ms   {loads['joblib'] / loads['lazy']:.1f}x faster"
        "  (target >= 10x; trees built on first predict)"
    )
    print(
        f"load+build joblib {loads['joblib'] * 1e3:6.1f} ms   artifact "
        f"{loads['eager'] * 1e3:8.1f} ms   {loads['joblib'] / loads['eager']:.1f}x faster"
        "  (load, then predict one row)"
    )
    print(
        f"predict  sklearn {predicts['sklearn'] * 1e3:7.1f} ms   artifact "
        f"{predicts['ours'] * 1e3:8.1f} ms   ratio {predicts['sklearn'] / predicts['ours']:.2f}"
        f"  (target >= 1.0; {PREDICT_ROWS:,} rows, 1 thread each; max |diff| {difference})"
    )
    print(
        f"predict  sklearn {threaded['sklearn'] * 1e3:7.1f} ms   artifact "
        f"{threaded['ours'] * 1e3:8.1f} ms   ratio {threaded['sklearn'] / threaded['ours']:.2f}"
        "  (2 threads each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats of each call")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for name, (X, y) in _datasets().items():
            _compare(name, X, y, Path(directory), arguments.repeats)


if __name__ == "__main__":
    main()

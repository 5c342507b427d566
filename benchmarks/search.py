"""groveflow search (successive halving on OOB, local engine) vs scikit-learn's searches.

For each dataset (make_classification and two bundled ones) and one grid, prints both
sides' best configuration and its holdout accuracy, the trees each side fitted, and the
wall time, as ratios measured in the same run:

- groveflow: ``groveflow.search`` with ``strategy="halving"``, ``metric="oob"``, on the
  embedded local engine with 2 workers, the winner grown to ``--trees`` and scored on the
  holdout (the same rows for every side: groveflow's own split of the data);
- ``GridSearchCV(RandomForestClassifier(n_estimators=trees), cv=3, n_jobs=2)`` over the
  same grid, refit on the training rows, scored on the holdout;
- ``HalvingGridSearchCV`` over the same grid with ``n_estimators`` as the resource
  (scikit-learn's own trees-as-budget halving), from ``--round-trees`` up to ``--trees``;
- the same random halving on both sides: ``HalvingRandomSearchCV`` and groveflow's halving
  over ``n_candidates`` points drawn from the grid (each side draws its own).

The trees and wall ratios are each side's over groveflow's halving over the whole grid.

"Within noise" is the holdout difference in binomial standard errors
(``sqrt(p (1 - p) / n_test)``). The AWS column is the local engine's estimate of what the
same search would cost on Lambda and Step Functions.

Usage: ``python benchmarks/search.py [--trees 100] [--round-trees 10] [--rows 2000]``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GRID = {
    "max_features": ["sqrt", 0.3, 0.7],
    "min_samples_leaf": [1, 3, 10],
    "max_depth": [None, 6],
}
SEED = 7
DRAWN = 9
"""Candidates drawn from the grid for the random halving on both sides."""


def _datasets(rows: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification

    X, y = make_classification(
        n_samples=rows, n_features=30, n_informative=10, n_classes=3, random_state=0
    )
    return {
        f"make_classification({rows})": (X.astype(np.float32), y),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        "digits": load_digits(return_X_y=True),
    }


def _split(y: np.ndarray, request: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """groveflow's training and holdout rows for this request (the plan's own rule)."""
    from groveflow.request import parse_train_request
    from groveflow.training import split_rows

    return split_rows(y, parse_train_request({k: v for k, v in request.items() if k != "search"}))


def _groveflow(
    engine: Any, search_id: str, X: np.ndarray, y: np.ndarray, args: Any, *, drawn: int = 0
) -> dict[str, Any]:
    import groveflow

    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    uri = engine.data_uri(f"{search_id}.npz", buffer.getvalue())
    request = {
        "data": {"uri": uri},
        "n_trees": args.trees,
        "grove_size": args.round_trees,
        "seed": SEED,
        "max_concurrency": 8,
        "search": {
            "space": GRID,
            "strategy": "halving",
            "metric": "oob",
            "factor": 3,
            "trees_per_round": args.round_trees,
            **({"n_candidates": drawn} if drawn else {}),
        },
    }
    started = time.perf_counter()
    result = groveflow.search(request, engine=engine, run_id=search_id)
    seconds = time.perf_counter() - started
    result.raise_for_status()
    metrics = result.run.metrics or {}
    cost = result.run.cost or {}
    return {
        "request": request,
        "params": {k: result.winner_params.get(k) for k in GRID},
        "score": float(metrics["accuracy"]),
        "n_test": int(metrics["n_test"]),
        "trees": int(result.trees_fitted or 0),
        "seconds": seconds,
        "aws_usd": cost.get("total_usd"),
    }


def _sklearn(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, args: Any
) -> dict[str, dict[str, Any]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV

    n_grid = math.prod(len(v) for v in GRID.values())
    forest = RandomForestClassifier(random_state=SEED)
    halving = {
        "resource": "n_estimators",
        "min_resources": args.round_trees,
        "max_resources": args.trees,
        "factor": 3,
        "cv": 3,
        "n_jobs": 2,
        "random_state": SEED,
    }
    searches = {
        "GridSearchCV": GridSearchCV(
            forest.set_params(n_estimators=args.trees), GRID, cv=3, n_jobs=2
        ),
        "HalvingGridSearchCV": HalvingGridSearchCV(
            RandomForestClassifier(random_state=SEED), GRID, **halving
        ),
        f"HalvingRandomSearchCV {DRAWN}": HalvingRandomSearchCV(
            RandomForestClassifier(random_state=SEED), GRID, n_candidates=DRAWN, **halving
        ),
    }
    sides: dict[str, dict[str, Any]] = {}
    for name, search in searches.items():
        started = time.perf_counter()
        search.fit(X[train], y[train])
        seconds = time.perf_counter() - started
        if name == "GridSearchCV":
            trees = n_grid * 3 * args.trees + args.trees
        else:  # 3 folds per candidate and resource, and the refit
            fitted = zip(search.n_candidates_, search.n_resources_, strict=True)
            trees = sum(3 * n * r for n, r in fitted) + search.best_params_["n_estimators"]
        sides[name] = {
            "params": {k: search.best_params_.get(k) for k in GRID},
            "score": float(search.score(X[test], y[test])),
            "trees": int(trees),
            "seconds": seconds,
        }
    return sides


def main() -> None:
    from groveflow.engines import Local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--round-trees", type=int, default=10)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    n_grid = math.prod(len(v) for v in GRID.values())
    print(
        f"grid of {n_grid} candidates {GRID}; {args.trees} trees in the end; 2 workers / n_jobs=2"
    )
    with (
        tempfile.TemporaryDirectory(prefix="groveflow-search-") as state,
        Local(workers=2, state_dir=Path(state)) as engine,
    ):
        assert engine.engine is not None  # started before any clock: not part of a search
        for number, (name, (X, y)) in enumerate(_datasets(args.rows).items()):
            stamp = f"{number}-{int(time.time())}"
            ours = _groveflow(engine, f"bench-{stamp}", X, y, args)
            train, test = _split(y, ours["request"])
            theirs = _sklearn(X, y, train, test, args)
            drawn = _groveflow(engine, f"bench-random-{stamp}", X, y, args, drawn=DRAWN)
            theirs = {**theirs, f"groveflow halving {DRAWN} drawn": drawn}
            p = ours["score"]
            se = math.sqrt(max(p * (1 - p), 1e-12) / ours["n_test"])
            print(f"\n{name}: {len(train)} training rows, {len(test)} holdout rows")
            header = f"  {'':26}{'holdout':>9}{'diff/se':>9}{'trees':>8}{'wall s':>8}"
            print(header + f"{'trees x':>9}{'wall x':>8}  best params")
            for side, row in itertools.chain([("groveflow halving", ours)], theirs.items()):
                diff = (row["score"] - p) / se
                trees, wall = row["trees"] / ours["trees"], row["seconds"] / ours["seconds"]
                print(
                    f"  {side:26}{row['score']:9.4f}{diff:+9.2f}{row['trees']:8d}"
                    f"{row['seconds']:8.1f}{trees:9.2f}{wall:8.2f}  {row['params']}"
                )
            print(f"  groveflow on AWS (estimate): ${ours['aws_usd']:.4f}")
    print(
        "\ntrees x and wall x: each side's over groveflow's (above 1: groveflow fit fewer "
        "trees / took less time); diff/se: holdout accuracy minus groveflow's, in standard "
        "errors of groveflow's holdout accuracy"
    )


if __name__ == "__main__":
    main()

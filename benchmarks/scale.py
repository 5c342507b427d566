"""Training on data larger than one Lambda: data size against wall time, bytes and memory.

Runs the real state machine on the embedded local engine with every function's
``MemorySize`` enforced (a worker over it is killed, ``Runtime.OutOfMemory``), the plan
and the grove builders given ``--memory`` MB (the template's ``PlanMemorySize`` and
``BuilderMemorySize``, overridden as ``sam deploy --parameter-overrides`` would), on
Parquet tables of float32 features and a binary label whose float32 size is
``--sizes`` times that memory (0.25,0.5,1,2,4 by default). Each run prints: rows, data
MB, wall seconds, the rows each grove fitted on (``rows_per_grove``: all of the training
split while it fits a builder, then the plan's default sample), the shards and MB one
grove read, each stage's peak memory against its MemorySize, and the holdout accuracy.
Then the growth in rows of the wall time, the plan's seconds and the bytes read per grove,
fitted on a log-log scale (target: 1, linear).

``--sklearn`` also fits scikit-learn's RandomForestClassifier on the largest table's
same training rows (groveflow's split), with ``max_samples`` = the groves' sample share
and the same trees and depth, and prints both holdout accuracies (in the same process,
so their difference is the sampling, not the machine).

Usage: ``python benchmarks/scale.py [--memory 512] [--sizes 0.25,0.5,1,2,4]
[--features 50] [--trees 16] [--grove-size 2] [--max-depth 12] [--sklearn]``.
Generated tables are kept in ``--data-dir`` for the next run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MB = 1024 * 1024


def _table(path: Path, rows: int, features: int) -> None:
    """A Parquet table of ``rows`` x ``features`` float32 columns and a 0/1 label, written a
    row group at a time (so this process never holds it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    weights = rng.normal(size=features) / math.sqrt(features)
    schema = pa.schema(
        [*(pa.field(f"f{i}", pa.float32()) for i in range(features)), pa.field("label", pa.int8())]
    )
    step = 250_000
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            X = rng.normal(size=(n, features)).astype(np.float32)
            noise = rng.normal(scale=0.5, size=n)
            y = ((X @ weights + np.sin(3 * X[:, 0]) + noise) > 0).astype(np.int8)
            columns = [pa.array(X[:, i]) for i in range(features)] + [pa.array(y)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def _fit(xs: list[float], ys: list[float]) -> float | None:
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    a, b = np.array(pairs).T
    return float(np.polyfit(a, b, 1)[0])


def _run(table: Path, args: argparse.Namespace, engine: Any, run_id: str) -> dict[str, Any]:
    import groveflow

    request = {
        "data": {"uri": str(table), "target": "label"},
        "n_trees": args.trees,
        "grove_size": args.grove_size,
        "model": {"params": {"max_depth": args.max_depth}},
        "max_concurrency": 2,
        "run_id": run_id,
    }
    started = time.perf_counter()
    result = groveflow.train(request, engine=engine)
    wall = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"{run_id}: {result.error}: {result.cause}")
    seen = result.output.get("data") or {}
    return {"result": result, "wall": wall, "seen": seen}


def _sklearn(
    table: Path, args: argparse.Namespace, rows_per_grove: int | None, seeds: int = 3
) -> tuple[list[float], float, float]:
    """scikit-learn's forest on groveflow's split of ``table``, with ``max_samples`` the
    groves' share of the training rows, for ``seeds`` random states: their accuracies, the
    share, and the seconds of one fit."""
    import pyarrow.parquet as pq
    from sklearn.ensemble import RandomForestClassifier

    from groveflow.request import parse_train_request
    from groveflow.training import test_mask

    data = pq.read_table(table)
    y = data.column("label").to_numpy().astype(np.int64)
    X = np.empty((len(y), data.num_columns - 1), dtype=np.float32)
    for j in range(data.num_columns - 1):
        X[:, j] = data.column(j).to_numpy()
    del data
    request = parse_train_request({"data": {"uri": str(table), "target": "label"}})
    test = test_mask(len(y), y, request)
    X_train, y_train = X[~test], y[~test]
    share = 1.0 if rows_per_grove is None else rows_per_grove / len(y_train)
    accuracies, seconds = [], 0.0
    for seed in range(seeds):
        forest = RandomForestClassifier(
            n_estimators=args.trees,
            max_depth=args.max_depth,
            max_samples=None if rows_per_grove is None else share,
            n_jobs=2,
            random_state=seed,
        )
        started = time.perf_counter()
        forest.fit(X_train, y_train)
        seconds = time.perf_counter() - started
        accuracies.append(float((forest.predict(X[test]) == y[test]).mean()))
    return accuracies, share, seconds


def _print_estimate(check: Any) -> None:
    """The plan's estimate of the run beside what it measured."""
    if check is not None:
        local = check.estimated_local_seconds
        print(
            f"{'':>6} plan's estimate: AWS wall {check.estimated_aws_seconds:.0f} s, "
            f"AWS cost ${check.estimated_cost_usd:.4f} (priced from this run's REPORT "
            f"lines: ${check.cost_usd or 0:.4f}); local wall "
            f"{'n/a' if local is None else f'{local:.0f} s'} against {check.seconds:.0f} s"
        )
    sys.stdout.flush()


def sizing_table() -> None:
    """The rows one grove holds, by builder memory and features, from the plan's own model
    (``estimate_grove_mb``, the size guard; default parameters, groves of 10 trees and of 2):
    what ``rows_per_grove`` defaults to when the training split is larger."""
    from groveflow.request import parse_train_request
    from groveflow.training._plan import _rows_that_fit, _shard_overhead_mb, estimate_grove_mb
    from groveflow.training._shards import shard_rows_for

    memories = (512, 1024, 3008, 10240)
    for grove_size in (10, 2):
        request = parse_train_request(
            {"data": {"uri": "x.csv", "target": "y"}, "n_trees": 10, "grove_size": grove_size}
        )
        print(f"rows per grove that fit a builder: groves of {grove_size} trees, binary labels")
        print(f"{'features':>8} " + " ".join(f"{f'{m} MB':>12}" for m in memories))
        for features in (10, 50, 200):
            overhead = _shard_overhead_mb(shard_rows_for(features), features)

            def needed(n: int, f: int = features, o: int = overhead) -> int:
                return estimate_grove_mb(n, f, 2, request) + o  # noqa: B023

            cells = [f"{_rows_that_fit(needed, m, 10**10):>12,}" for m in memories]
            print(f"{features:>8} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, default=512, help="plan and builder MemorySize (MB)")
    parser.add_argument("--sizes", default="0.25,0.5,1,2,4", help="data size / --memory")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--trees", type=int, default=16)
    parser.add_argument("--grove-size", type=int, default=2)
    parser.add_argument("--max-depth", type=int, default=12)
    parser.add_argument("--sklearn", action="store_true", help="fit scikit-learn on the largest")
    parser.add_argument("--data-dir", default="/tmp/groveflow-bench-scale")
    parser.add_argument("--table", action="store_true", help="print the sizing table only")
    args = parser.parse_args()
    if args.table:
        sizing_table()
        return

    from groveflow.engines import Local

    directory = Path(args.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    sizes = [float(s) for s in args.sizes.split(",")]
    parameters = {"PlanMemorySize": args.memory, "BuilderMemorySize": args.memory}
    print(f"plan and builders at {args.memory} MB (enforced); {args.features} float32 features")
    header = (
        f"{'x mem':>6} {'rows':>10} {'data MB':>8} {'wall s':>7} {'plan s':>7} "
        f"{'grove rows':>10} {'shards':>6} {'read MB':>8} "
        f"{'plan MB':>8} {'grove MB':>8} {'ingest MB':>9} {'merge MB':>8} {'OOM':>4} "
        f"{'accuracy':>8}"
    )
    print(header)
    rows_list, walls, plans, reads = [], [], [], []
    largest: tuple[Path, int | None] | None = None
    with Local(workers=2, state_dir=directory / "state", parameters=parameters) as engine:
        for size in sizes:
            rows = int(size * args.memory * MB / (4 * args.features))
            table = directory / f"rows-{rows}x{args.features}.parquet"
            if not table.exists():
                _table(table, rows, args.features)
            run_id = f"scale-{rows}-{int(time.time())}"
            out = _run(table, args, engine, run_id)
            result, seen = out["result"], out["seen"]
            memory = result.memory
            peak = {k: (memory[k].max_memory_used_mb if k in memory else None) for k in memory}
            read_mb = (seen.get("grove_bytes_read") or 0) / MB
            grove_rows = seen.get("grove_rows") or result.output.get("metrics", {}).get("n_test")
            print(
                f"{size:>6g} {rows:>10} {rows * args.features * 4 / MB:>8.0f} {out['wall']:>7.1f} "
                f"{result.phase_seconds.get('Plan', 0):>7.1f} {grove_rows or 0:>10} "
                f"{seen.get('grove_shards') or 0:>6} {read_mb:>8.0f} "
                f"{peak.get('Plan') or 0:>8} {peak.get('BuildGroves') or 0:>8} "
                f"{peak.get('Ingest') or 0:>9} {peak.get('Merge') or 0:>8} "
                f"{sum(use.out_of_memory for use in memory.values()):>4} "
                f"{result.metrics['accuracy']:>8.4f}"
            )
            _print_estimate(result.estimate)
            rows_list.append(rows)
            walls.append(out["wall"])
            plans.append(result.phase_seconds.get("Plan", 0.0))
            reads.append(read_mb)
            largest = (table, seen.get("rows_per_grove"))
            last = result
    print(
        "growth in rows (log-log slope, target 1): "
        f"wall {_fit(rows_list, walls)}, plan {_fit(rows_list, plans)}, "
        f"read per grove {_fit(rows_list, reads)}"
    )
    if args.sklearn and largest is not None:
        accuracies, share, seconds = _sklearn(largest[0], args, largest[1])
        print(
            f"largest table: groveflow accuracy {last.metrics['accuracy']:.4f}; scikit-learn "
            f"RandomForestClassifier on the same training rows (max_samples={share:.4f}, "
            f"{args.trees} trees, max_depth={args.max_depth}), random_state 0..2: "
            f"{', '.join(f'{a:.4f}' for a in accuracies)} ({seconds:.1f} s a fit); "
            f"groveflow minus their mean {last.metrics['accuracy'] - np.mean(accuracies):+.4f}, "
            f"their spread {max(accuracies) - min(accuracies):.4f}"
        )


if __name__ == "__main__":
    main()

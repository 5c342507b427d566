"""A forest larger than one merge is refused by name before any grove (issue 27).

The plan predicts the merge's peak memory from its trial grove
(:mod:`groveflow.merge_memory`) and refuses a forest that would not fit ``MergeMemorySize``,
naming it and the memory needed. The prediction is held against real merges measured on
the local engine (each invocation's ``Max Memory Used``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, unique_name
from groveflow.errors import DatasetTooLarge
from groveflow.estimates import RunEstimate
from groveflow.layout import keys
from groveflow.local.template import read_template
from groveflow.merge_memory import MEASURED_FACTOR, MERGE_TIMEOUT_SECONDS, MergeSize, merge_size
from groveflow.request import parse_train_request
from groveflow.training._sizing import check_merge_fits

MERGE_MEMORY_MB = 1024  # template.yaml's smallest MergeMemorySize


@pytest.fixture(scope="module")
def small_merge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An engine whose merge has 1,024 MB, with a plan that knows it."""
    from groveflow.local import LocalEngine

    tmp = tmp_path_factory.mktemp("merge-memory")
    parameters = {"MergeMemorySize": str(MERGE_MEMORY_MB)}
    with LocalEngine(ROOT, workers=2, state_dir=tmp / "state", parameters=parameters) as running:
        yield running
    shutil.rmtree(tmp, ignore_errors=True)


def _table(directory: Path, name: str, task: str, rows: int, features: int) -> str:
    """A seeded table (features, then the target) as .npy: regression targets make deep
    trees (a leaf a row or two), the classes a few values per node."""
    rng = np.random.default_rng(27)
    X = rng.normal(size=(rows, features))
    y = 3 * X[:, 0] + np.sin(X[:, 1]) + rng.normal(size=rows)
    if task == "classification":
        y = (np.abs(2 * X[:, 0] + X[:, 1]) * 5 / 3).astype(int) % 5
    if name.endswith(".csv"):  # through Ingest, so the plan may split it into row shards
        path = directory / name
        header = ",".join([*(f"f{i}" for i in range(features)), "y"])
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="")
        return str(path)
    path = directory / f"{name}.npy"
    np.save(path, np.column_stack([X, y]))
    return str(path)


def _request(uri: str, task: str, n_trees: int, **params: Any) -> dict[str, Any]:
    return {
        "data": {"uri": uri, **({"target": "y"} if uri.endswith(".csv") else {})},
        "model": {"task": task, "params": params},
        "n_trees": n_trees,
        "grove_size": 10,
    }


def _run(engine: Any, request: dict[str, Any], prefix: str) -> Any:
    run_id = unique_name(prefix)
    return engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)


def _stored(engine: Any, key: str) -> dict[str, Any]:
    body = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    value: dict[str, Any] = json.loads(body)
    return value


def test_a_forest_whose_merge_would_not_fit_is_refused_before_any_grove(
    small_merge: Any, tmp_path: Path
) -> None:
    # GIVEN deep regression trees (about 3.4 MB each in the merge) and a 1,024 MB merge
    uri = _table(tmp_path, "deep", "regression", 20_000, 10)
    # WHEN a forest of 1,000 of them is asked for
    result = _run(small_merge, _request(uri, "regression", 1000), "too-large")
    # THEN the plan refuses it by name, with the memory it needs and the fix
    assert result.status == "FAILED"
    assert result.error == "DatasetTooLarge", result.cause
    cause = json.loads(result.cause)["errorMessage"]
    assert f"MergeMemorySize={MERGE_MEMORY_MB} MB" in cause
    needed = int(cause.split("needs about ")[1].split(" MB")[0])
    assert needed > 3000
    assert "max_depth" in cause and "min_samples_leaf" in cause
    # AND no grove was built
    functions = [i.function for i in result.invocations]
    assert "PlanFunction" in functions and "BuildGroveFunction" not in functions


def test_the_same_forest_trains_where_its_merge_fits(
    small_merge: Any, engine: Any, tmp_path: Path
) -> None:
    # GIVEN a forest whose merge fits 1,024 MB
    uri = _table(tmp_path, "fits", "classification", 3_000, 6)
    request = _request(uri, "classification", 30)
    # WHEN it trains with the check (1,024 MB) and on the shipped stack
    checked = _run(small_merge, request, "checked")
    shipped = _run(engine, request, "shipped")
    # THEN both succeed with the same forest, byte for byte
    assert checked.status == shipped.status == "SUCCEEDED", (checked.cause, shipped.cause)
    forests = [
        _stored(e, keys.manifest(r.output["run_id"]))["forest"]["sha256"]
        for e, r in ((small_merge, checked), (engine, shipped))
    ]
    assert forests[0] == forests[1]


@pytest.mark.parametrize(
    ("task", "rows", "n_trees", "params", "more"),
    [
        ("regression", 20_000, 120, {}, {}),
        ("classification", 30_000, 80, {"oob_score": True}, {}),
        ("classification", 30_000, 20, {"min_samples_leaf": 20}, {}),
        ("regression", 20_000, 100, {}, {"rows_per_grove": 5000}),
    ],
    ids=["deep-regression", "classes-with-oob", "shallow", "row-shards"],
)
def test_the_predicted_merge_memory_is_within_its_factor_of_the_measured(
    small_merge: Any,
    tmp_path: Path,
    task: str,
    rows: int,
    n_trees: int,
    params: dict[str, Any],
    more: dict[str, Any],
) -> None:
    # GIVEN a run merged on the local engine, which measures each invocation's peak
    name = f"{task}.csv" if more else task
    uri = _table(tmp_path, name, task, rows, 8)
    result = _run(small_merge, {**_request(uri, task, n_trees, **params), **more}, "measured")
    assert result.status == "SUCCEEDED", result.cause
    measured = max(
        i.max_memory_mb or 0 for i in result.invocations if i.function == "MergeFunction"
    )
    if not measured:
        pytest.skip("the local engine measures memory from /proc (Linux)")
    # WHEN the plan's estimate predicts the merge's peak
    record = _stored(small_merge, keys.request(result.output["run_id"]))
    predicted = RunEstimate.from_dict(record["estimate"]).merge_size.peak_mb(n_trees)
    # THEN the prediction is at least the measured peak, and within the stated factor
    assert measured <= predicted <= MEASURED_FACTOR * measured, (measured, predicted)


def _estimate(mb_per_tree: float, merge_seconds: float = 10.0) -> RunEstimate:
    from groveflow.cost import estimate_cost
    from groveflow.estimates import AwsWall

    return RunEstimate(
        seconds_per_tree=0.1,
        grove_overhead_seconds=0.0,
        merge_seconds_per_tree=merge_seconds / 100,
        trial_trees=10,
        trees_per_grove=10,
        n_trees=100,
        groves=10,
        concurrency=10,
        builder_memory_mb=1769,
        plan_memory_mb=3008,
        merge_memory_mb=3008,
        split_mb=1.0,
        data_mb=1.0,
        grove_mb=1.0,
        plan_seconds=1.0,
        oob=False,
        ingested=False,
        aws=AwsWall(0.0, 0.0, 0.0, 0.0, 0.0, merge_seconds),
        cost=estimate_cost([], 0),
        merge_fixed_mb=200.0,
        merge_mb_per_tree=mb_per_tree,
    )


def test_a_forest_past_lambdas_largest_merge_says_fewer_trees() -> None:
    # GIVEN trees of 4 MB each in the merge, 5,000 of them
    request = parse_train_request({"data": {"uri": "sklearn:iris"}, "n_trees": 5000})
    # THEN even Lambda's largest merge cannot hold them, and the refusal says so
    with pytest.raises(DatasetTooLarge) as refused:
        check_merge_fits(request, _estimate(mb_per_tree=4.0), 10240)
    message = str(refused.value)
    assert "needs about 20200 MB in the merge" in message
    assert "at most 2510 such trees fit" in message
    assert "10,240 MB ceiling is not enough" in message


def test_a_merge_past_its_timeout_is_refused() -> None:
    # GIVEN 100 trees merging in 10 s: 10,000 trees take 1,000 s, past the 900 s Timeout
    request = parse_train_request({"data": {"uri": "sklearn:iris"}, "n_trees": 10_000})
    with pytest.raises(DatasetTooLarge, match="merge's Timeout of 900 s"):
        check_merge_fits(request, _estimate(mb_per_tree=0.01), 3008)
    # AND 8,000 trees (800 s) are not
    check_merge_fits(replace(request, n_trees=8000), _estimate(mb_per_tree=0.01), 3008)


def test_the_plan_is_told_the_merges_memory() -> None:
    resources = read_template(ROOT / "template.yaml")["Resources"]
    plan = resources["PlanFunction"]["Properties"]["Environment"]["Variables"]
    assert plan["GROVEFLOW_MERGE_MEMORY_MB"] == {"Ref": "MergeMemorySize"}
    assert resources["MergeFunction"]["Properties"]["MemorySize"] == {"Ref": "MergeMemorySize"}


def test_the_merge_timeout_is_the_templates() -> None:
    resources = read_template(ROOT / "template.yaml")
    timeout = resources["Resources"]["MergeFunction"]["Properties"].get(
        "Timeout", resources["Globals"]["Function"]["Timeout"]
    )
    assert timeout == MERGE_TIMEOUT_SECONDS


def test_a_split_in_row_shards_is_scored_a_shard_at_a_time() -> None:
    # GIVEN 10 million held-out rows of 50 features (2 GB of float32)
    def size(test_whole: bool) -> MergeSize:
        return merge_size(
            encoded_bytes_per_tree=1e5,
            nodes_per_tree=1e3,
            n_values=1,
            n_test=10_000_000,
            n_features=50,
            n_train=40_000_000,
            oob=False,
            test_whole=test_whole,
        )

    # THEN read whole they count, and in row shards one shard's worth does
    whole, sharded = size(True), size(False)
    assert whole.fixed_mb - sharded.fixed_mb == pytest.approx(10_000_000 * 400 / 2**20 - 64)
    assert whole.mb_per_tree == sharded.mb_per_tree


def test_the_merge_size_is_a_line_in_trees() -> None:
    size = MergeSize(fixed_mb=200.0, mb_per_tree=0.5)
    assert (size.peak_mb(0), size.peak_mb(100)) == (200, 250)
    assert size.most_trees(250) == 100 and size.most_trees(100) == 0

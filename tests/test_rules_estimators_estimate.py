"""Issue 26, item 12 (its estimate part): ``groveflow estimate`` reads the data in a worker
held to the plan's memory, as the plan is on AWS, instead of growing without bound."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import pytest

from groveflow.api import estimate
from groveflow.cli import main
from groveflow.errors import DatasetTooLarge, InvalidRequest


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def test_an_estimate_over_the_plans_memory_is_refused_by_name(tmp_path: Path) -> None:
    # GIVEN 96 MB of float64 rows, which the plan (and so the estimate) reads whole
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 12))
    np.savez(tmp_path / "big.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    del X
    before = _peak_mb()

    # WHEN it is estimated for a plan of 256 MB
    with pytest.raises(DatasetTooLarge) as refused:
        estimate({"data": {"uri": str(tmp_path / "big.npz")}, "n_trees": 10}, plan_memory_mb=256)

    # THEN it is refused by name with the plan's memory, and this process never held the data
    assert str(refused.value).startswith(
        "reading and checking this data took more than the plan's 256 MB"
    )
    assert "PlanMemorySize" in str(refused.value)
    assert _peak_mb() - before < 48


def test_an_estimate_within_the_plans_memory_is_made_in_its_worker(tmp_path: Path) -> None:
    request = tmp_path / "iris.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 10}))

    small = estimate(request, plan_memory_mb=512)

    assert small.groves == 1 and small.cost_usd > 0
    assert main(["estimate", str(request), "--json"]) == 0


@pytest.mark.parametrize("memory", [{"plan_memory_mb": 1}, {"builder_memory_mb": 0}])
def test_a_memory_size_the_template_would_refuse_is_refused(memory: dict[str, int]) -> None:
    [(name, value)] = memory.items()

    with pytest.raises(InvalidRequest, match=rf"^{name}={value}: give a whole number of MB"):
        estimate({"data": {"uri": "sklearn:iris"}}, **memory)


def test_a_csv_the_plan_would_split_into_row_shards_is_estimated_not_refused(
    tmp_path: Path,
) -> None:
    # GIVEN a 31 MB CSV that a 256 MB plan does not read whole but splits into row shards
    # (a run with PlanMemorySize=256 trains it), ingested by a function of its own on AWS
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400_000, 8)).astype(np.float32)
    header = ",".join([f"f{i}" for i in range(8)] + ["label"])
    rows = np.column_stack([X, X[:, 0] > 0])
    np.savetxt(tmp_path / "big.csv", rows, delimiter=",", header=header, comments="", fmt="%.6f")
    request = {"data": {"uri": str(tmp_path / "big.csv"), "target": "label"}, "n_trees": 4}

    # WHEN it is estimated for that plan
    estimated = estimate(request, plan_memory_mb=256, workers=2)

    # THEN the estimate is made (Ingest and the plan each within their own memory), as the
    # run would be, rather than refused as data the plan cannot hold
    assert estimated.groves >= 1 and estimated.cost_usd > 0

"""The plan and grove stages called directly, against the local engine's S3."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from groveflow import storage, training
from groveflow.errors import DatasetTooLarge
from groveflow.layout import keys
from groveflow.request import parse_train_request


def _listing(engine: Any, prefix: str) -> list[str]:
    return [
        o["Key"]
        for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=prefix).get("Contents", [])
    ]


# Worked by hand from estimate_grove_mb's docstring, for digits (10 classes) with the default
# test_fraction=0.2: 1437 training rows x 64 features, groves of 100 trees, min_samples_leaf=1.
#   nodes per tree      2 * 1437 / 1                          =      2,874
#   bytes per tree      2,874 * (64 + 8 * 10 classes)         =    413,856
#   split + work set    2 * 1437 * 64 * 4  +  40 * 1437       =    793,224
#   total               793,224 + 100 * 413,856               = 42,178,824 B = 40.2 MiB
#   estimate            200 MB baseline + ceil(40.2)          =        241 MB
# (counting 2 classes, as the guard once did, gives 223 MB: a 240 MB builder would pass.)
DIGITS_GROVE_OF_100_MB = 241


def test_size_guard_counts_every_class_against_a_hand_computed_figure(s3_env: Any) -> None:
    # GIVEN groves of 100 fully grown trees on digits (10 classes), and a builder 1 MB short
    run_id = unique_name("too-big")
    request = {
        "data": {"uri": "sklearn:digits"},
        "n_trees": 100,
        "grove_size": 100,
        "run_id": run_id,
    }
    memory_mb = DIGITS_GROVE_OF_100_MB - 1
    # WHEN the plan runs
    with pytest.raises(
        DatasetTooLarge, match=r"set the grove builder's memory to \d+ MB"
    ) as raised:
        training.plan_run({"request": request}, bucket=s3_env.bucket, builder_memory_mb=memory_mb)
    # THEN it names the hand-computed need, and nothing of the run was written
    assert f"needs about {DIGITS_GROVE_OF_100_MB} MB" in str(raised.value)
    assert _listing(s3_env, keys.run_prefix(run_id)) == []


@pytest.mark.parametrize(
    ("task", "labels", "expected_mb"),
    # regression: 1 value per node -> 2,874 * 72 * 100 + 793,224 = 21,486,024 B -> 200 + 21
    # 10 classes as above; 3 classes: 2,874 * 88 * 100 + 793,224 = 26,084,424 B -> 200 + 25
    [("regression", 1437, 221), ("classification", 10, 241), ("classification", 3, 225)],
)
def test_size_guard_estimate_matches_the_hand_computation(
    task: str, labels: int, expected_mb: int
) -> None:
    # GIVEN a training split of 1437 x 64 with `labels` distinct targets
    request = parse_train_request(
        {
            "data": {"uri": "sklearn:digits"},
            "n_trees": 100,
            "grove_size": 100,
            "model": {"kind": "random_forest", "task": task},
        }
    )
    X = np.zeros((1437, 64), dtype=np.float32)
    y = np.arange(1437) % labels
    # WHEN the guard checks a builder of exactly that memory, and of 1 MB less
    training.check_fits(X, request, expected_mb, y_train=y)
    # THEN only the smaller one is refused, naming the figure
    with pytest.raises(DatasetTooLarge, match=f"needs about {expected_mb} MB"):
        training.check_fits(X, request, expected_mb - 1, y_train=y)


def test_grove_builder_reads_the_training_split_once_while_warm(
    s3_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a planned run
    run_id = unique_name("warm")
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 6, "grove_size": 2, "run_id": run_id}
    training.plan_run({"request": request}, bucket=s3_env.bucket, builder_memory_mb=3008)
    plan = storage.get_json(s3_env.bucket, keys.plan(run_id))
    reads: list[str] = []
    real_get_bytes = storage.get_bytes

    def counting(bucket: str, key: str) -> bytes:
        reads.append(key)
        return real_get_bytes(bucket, key)

    monkeypatch.setattr(storage, "get_bytes", counting)
    # WHEN one warm builder builds three groves
    for item in plan:
        training.build_grove(item, bucket=s3_env.bucket)
    # THEN the split was read once, and every grove was stored
    assert reads.count(keys.split(run_id, "X_train")) == 1
    assert len(_listing(s3_env, keys.groves_prefix(run_id))) == 3


@pytest.mark.parametrize(("n_trees", "expected"), [(3, (3, 1)), (10, (10, 1)), (25, (10, 3))])
def test_default_grove_size_never_exceeds_the_forest(n_trees: int, expected: tuple[int, int]):
    # GIVEN a request that sets n_trees but not grove_size
    request = parse_train_request({"data": {"uri": "sklearn:iris"}, "n_trees": n_trees})
    # THEN groves hold up to 10 trees, and a small forest is one grove
    assert (request.grove_size, request.n_groves) == expected

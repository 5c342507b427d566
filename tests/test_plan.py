"""The plan and grove stages called directly, against the local engine's S3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import unique_name
from groveflow import storage, train
from groveflow.errors import DatasetTooLarge
from groveflow.layout import keys


@pytest.fixture
def s3_env(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ENDPOINT_URL_S3": engine.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    storage._s3.cache_clear()
    yield engine
    storage._s3.cache_clear()


def _listing(engine: Any, prefix: str) -> list[str]:
    return [
        o["Key"]
        for o in engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=prefix).get("Contents", [])
    ]


def test_size_guard_refuses_a_grove_too_big_for_the_builder_and_suggests_memory(
    s3_env: Any,
) -> None:
    # GIVEN groves of 100 fully grown trees on digits, and a builder 1 MB short of the estimate
    run_id = unique_name("too-big")
    request = {
        "data": {"uri": "sklearn:digits"},
        "n_trees": 100,
        "grove_size": 100,
        "run_id": run_id,
    }
    needed = train.estimate_grove_mb(1437, 64, 2, train.parse_train_request(request))
    # WHEN the plan runs with less memory than the estimate
    with pytest.raises(
        DatasetTooLarge, match=r"set the grove builder's memory to \d+ MB"
    ) as raised:
        train.plan_run({"request": request}, bucket=s3_env.bucket, builder_memory_mb=needed - 1)
    # THEN it names the sizes, and nothing of the run was written
    assert f"needs about {needed} MB" in str(raised.value)
    assert _listing(s3_env, keys.run_prefix(run_id)) == []


def test_grove_builder_reads_the_training_split_once_while_warm(
    s3_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a planned run
    run_id = unique_name("warm")
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 6, "grove_size": 2, "run_id": run_id}
    train.plan_run({"request": request}, bucket=s3_env.bucket, builder_memory_mb=3008)
    plan = storage.get_json(s3_env.bucket, keys.plan(run_id))
    reads: list[str] = []
    real_get_bytes = storage.get_bytes

    def counting(bucket: str, key: str) -> bytes:
        reads.append(key)
        return real_get_bytes(bucket, key)

    monkeypatch.setattr(storage, "get_bytes", counting)
    # WHEN one warm builder builds three groves
    for item in plan:
        train.build_grove(item, bucket=s3_env.bucket)
    # THEN the split was read once, and every grove was stored
    assert reads.count(keys.split(run_id, "X_train")) == 1
    assert len(_listing(s3_env, keys.groves_prefix(run_id))) == 3


@pytest.mark.parametrize(("n_trees", "expected"), [(3, (3, 1)), (10, (10, 1)), (25, (10, 3))])
def test_default_grove_size_never_exceeds_the_forest(n_trees: int, expected: tuple[int, int]):
    # GIVEN a request that sets n_trees but not grove_size
    request = train.parse_train_request({"data": {"uri": "sklearn:iris"}, "n_trees": n_trees})
    # THEN groves hold up to 10 trees, and a small forest is one grove
    assert (request.grove_size, request.n_groves) == expected

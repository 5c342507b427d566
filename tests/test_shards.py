"""Data larger than one function: row shards, per-grove samples, sharded evaluation.

The stages are called directly against the local engine's S3 (as their handlers call
them), with the plan's memory and the builders' given so that the data does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from evidence import body, stored_npy
from groveflow import storage, training
from groveflow.errors import DatasetTooLarge, InvalidRequest
from groveflow.ingest import ingest
from groveflow.layout import keys
from groveflow.training._shards import shards_key


def _table(path: Path, rows: int, features: int, *, classes: int = 3, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=rows)
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.array(["low", "mid", "high", "top"][:classes])[np.searchsorted(edges, score)]
    columns = {f"f{i}": X[:, i] for i in range(features)}
    pq.write_table(pa.table({**columns, "label": labels}), path, row_group_size=5_000)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _table(tmp_path_factory.mktemp("shards") / "rows.parquet", 40_000, 12)


def _run(
    s3_env: Any,
    request: dict[str, Any],
    *,
    plan_memory_mb: int | None = None,
    builder_memory_mb: int = 3008,
    shard_mb: float = 0.25,
) -> dict[str, Any]:
    """Ingest, plan, build every grove and merge, as the state machine does."""
    name = str(request["run_id"])
    event = {"request": request, "execution_name": name, "state_machine": "shards-test"}
    converted = ingest(event, bucket=s3_env.bucket, local_paths=True)["converted"]
    planned = training.plan_run(
        {**event, "converted": converted},
        bucket=s3_env.bucket,
        builder_memory_mb=builder_memory_mb,
        local_paths=True,
        plan_memory_mb=plan_memory_mb,
        shard_mb=shard_mb,
    )
    for item in storage.get_json(s3_env.bucket, keys.plan(name)):
        training.build_grove(item, bucket=s3_env.bucket)
    return {"plan": planned, "merge": training.merge_run({"run_id": name}, bucket=s3_env.bucket)}


def _manifest(s3_env: Any, run_id: str) -> dict[str, Any]:
    return dict(storage.get_json(s3_env.bucket, keys.manifest(run_id)))


def _stored(s3_env: Any, run_id: str) -> list[str]:
    return storage.list_keys(s3_env.bucket, keys.run_prefix(run_id))


REQUEST = {"target": "label"}


def _request(table: Path, run_id: str, **more: Any) -> dict[str, Any]:
    return {
        "data": {"uri": str(table), **REQUEST},
        "n_trees": 6,
        "grove_size": 2,
        "model": {"params": {"max_depth": 6}},
        "run_id": run_id,
        **more,
    }


def _plan_cannot_hold_it_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a plan whose memory is smaller than the data read whole needs (the check, not a
    big table, decides: the table is small so that the tests stay fast)."""
    from groveflow.training import _plan

    monkeypatch.setattr(_plan, "_fits_plan", lambda spec, memory: False)


def test_a_run_in_row_shards_gives_the_forest_of_a_run_read_whole(
    s3_env: Any, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN one table trained twice: read whole, and by a plan too small to hold it (row
    # shards of 1/4 MiB, every grove reading all the training shards)
    whole, sharded = unique_name("whole"), unique_name("sharded")
    model = {"params": {"max_depth": 6, "oob_score": True}}
    _run(s3_env, _request(table, whole, model=model))
    _plan_cannot_hold_it_whole(monkeypatch)
    out = _run(s3_env, _request(table, sharded, model=model))
    # THEN the second was split into several shards, and no split array exists
    record = storage.get_json(s3_env.bucket, keys.request(sharded))
    document = storage.get_json(s3_env.bucket, shards_key(sharded))
    assert record["data"]["shards"]["rows_per_grove"] is None
    assert "does not fit the plan's memory" in record["data"]["shards"]["why"]
    assert len(document["train"]) >= 4 and len(document["test"]) >= 1
    assert not storage.exists(s3_env.bucket, keys.split(sharded, "X_train"))
    # AND both hold out the same rows, and the forests are equal byte for byte
    a, b = _manifest(s3_env, whole), _manifest(s3_env, sharded)
    assert a["data"]["test_rows_sha256"] == b["data"]["test_rows_sha256"]
    assert a["data"]["sha256"] == b["data"]["sha256"]
    assert a["forest"]["sha256"] == b["forest"]["sha256"]
    assert body(s3_env, keys.forest(whole)) == body(s3_env, keys.forest(sharded))
    # AND the holdout metrics, scored a shard at a time, equal the whole test split's, and
    # so do the OOB scores
    assert a["metrics"] == b["metrics"] == out["merge"]["metrics"]
    assert a["oob"]["metrics"] == b["oob"]["metrics"] and a["oob"]["metrics"]["oob_score"] > 0.5
    assert all(g["data"]["rows"] == document["n_train"] for g in b["groves"])
    # (one warm builder here: the first grove read every shard, the others its cached rows)
    assert [g["data"]["shards"] for g in b["groves"]] == [len(document["train"]), 0, 0]


def test_each_grove_fits_on_its_own_stratified_sample_drawn_across_the_shards(
    s3_env: Any, table: Path
) -> None:
    # GIVEN rows_per_grove well below the training split
    run_id = unique_name("sampled")
    out = _run(s3_env, _request(table, run_id, rows_per_grove=3_000))
    manifest = _manifest(s3_env, run_id)
    document = storage.get_json(s3_env.bucket, shards_key(run_id))
    # THEN every grove saw 3,000 rows (and said so), the manifest records the rule
    assert [g["data"]["rows"] for g in manifest["groves"]] == [3_000] * 3
    assert "seeded sample of 3000 of the 32000 training rows" in manifest["data"]["shards"]["rule"]
    assert all(0 < g["data"]["shards"] <= len(document["train"]) for g in manifest["groves"])
    # AND the samples are stratified, differ between groves, and repeat for a grove's seed
    from groveflow.training._shards import sample_rows

    codes = stored_npy(s3_env, keys.split(run_id, "train_codes"))
    ends = np.cumsum([e["rows"] for e in document["train"]])
    by_shard = np.split(codes, ends[:-1])
    assert [e["class_counts"] for e in document["train"]] == [
        np.bincount(c, minlength=3).tolist() for c in by_shard
    ]
    seeds = [g["seed"] for g in manifest["groves"]]
    samples = [sample_rows(document, 3_000, seed, by_shard) for seed in seeds]
    share = np.bincount(codes) / len(codes)
    for rows in samples:
        assert len(np.unique(rows)) == 3_000
        assert np.abs(np.bincount(codes[rows]) / 3_000 - share).max() < 1e-3
        # drawn across every shard in proportion (not a few whole shards)
        per_shard = np.bincount(np.searchsorted(ends, rows, side="right"), minlength=len(ends))
        assert (per_shard > 0).all()
    assert len(np.intersect1d(samples[0], samples[1])) < 1_000
    assert np.array_equal(samples[0], sample_rows(document, 3_000, seeds[0], by_shard))
    # AND each grove is the forest scikit-learn fits on exactly those rows of the table read
    # whole (its training rows by the same split), byte for byte
    X_train, y_train = _training_rows(table, _parsed(table, run_id))
    for grove, rows in zip(manifest["groves"][:2], samples, strict=False):
        assert body(s3_env, keys.grove(run_id, grove["grove"])) == _grove_bytes(
            X_train[rows], y_train[rows], grove
        )
    # AND the forest is a working model scored over the test shards
    assert out["merge"]["metrics"]["n_test"] == 8_000
    assert out["merge"]["metrics"]["accuracy"] > 0.7
    # AND a grove built again (a retry) is byte for byte the one stored
    key = keys.grove(run_id, 0)
    first = body(s3_env, key)
    storage.delete(s3_env.bucket, key)
    training.build_grove(
        storage.get_json(s3_env.bucket, keys.plan(run_id))[0], bucket=s3_env.bucket
    )
    assert body(s3_env, key) == first


def test_a_resumed_plan_splits_as_its_record_says_whatever_the_memory_now(
    s3_env: Any, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run whose plan (too small to hold it whole: row shards) claimed the run id
    # and died before the shard document, one shard lost with it
    run_id = unique_name("resumed-shards")
    request = _request(table, run_id)
    event = {"request": request, "execution_name": run_id, "state_machine": "shards-test"}
    converted = ingest(event, bucket=s3_env.bucket, local_paths=True)["converted"]
    plan = {**event, "converted": converted}
    with monkeypatch.context() as patched:
        _plan_cannot_hold_it_whole(patched)
        training.plan_run(
            plan, bucket=s3_env.bucket, builder_memory_mb=3008, local_paths=True, shard_mb=0.25
        )
    document = storage.get_json(s3_env.bucket, shards_key(run_id))
    storage.delete(s3_env.bucket, shards_key(run_id))
    storage.delete(s3_env.bucket, document["train"][1]["key"])
    # WHEN it is resumed by a plan that could hold the data whole, with other shard sizes
    training.plan_run(
        plan, bucket=s3_env.bucket, builder_memory_mb=3008, local_paths=True, shard_mb=16
    )
    # THEN it split as the record says (row shards of the same size), and trains the forest
    # a run read whole gives
    assert storage.get_json(s3_env.bucket, shards_key(run_id)) == document
    assert not storage.exists(s3_env.bucket, keys.split(run_id, "X_train"))
    for item in storage.get_json(s3_env.bucket, keys.plan(run_id)):
        training.build_grove(item, bucket=s3_env.bucket)
    training.merge_run({"run_id": run_id}, bucket=s3_env.bucket)
    whole = unique_name("whole-again")
    _run(s3_env, _request(table, whole))
    assert body(s3_env, keys.forest(run_id)) == body(s3_env, keys.forest(whole))


def test_allocate_shares_exactly_even_for_skewed_classes() -> None:
    from groveflow.training._plan import allocate

    for counts, total, keep in [
        ([1000, 1000, 1], 10, 0),
        ([2, 98], 10, 1),
        ([5, 5, 5, 985], 40, 1),
        ([3, 3, 3], 9, 0),
        ([10**6, 7, 2], 200_001, 1),
    ]:
        take = allocate(np.array(counts), total, keep)
        assert take.sum() == total, (counts, total, take)
        assert (take >= 1).all() and (take <= np.array(counts) - keep).all()


def test_a_regression_run_samples_its_groves_uniformly(s3_env: Any, table: Path) -> None:
    # GIVEN a regression target and rows_per_grove
    run_id = unique_name("sampled-regression")
    request = _request(table, run_id, rows_per_grove=2_000)
    request["data"] = {"uri": str(table), "target": "f1", "exclude": ["label"]}
    request["model"] = {"task": "regression", "params": {"max_depth": 6}}
    out = _run(s3_env, request)
    manifest = _manifest(s3_env, run_id)
    # THEN each grove fitted on 2,000 rows, with no class numbers stored, and it scores
    assert [g["data"]["rows"] for g in manifest["groves"]] == [2_000] * 3
    assert not storage.exists(s3_env.bucket, keys.split(run_id, "train_codes"))
    assert "stratified" not in manifest["data"]["shards"]["rule"]
    assert out["merge"]["metrics"]["n_test"] == 8_000 and "r2" in out["merge"]["metrics"]


def test_a_split_too_large_for_a_builder_gets_a_safe_default_sample_reported(
    s3_env: Any, table: Path
) -> None:
    # GIVEN builders (208 MB) too small for the 32,000 training rows, no rows_per_grove
    run_id = unique_name("default-sample")
    out = _run(s3_env, _request(table, run_id), builder_memory_mb=208)
    record = storage.get_json(s3_env.bucket, keys.request(run_id))["data"]["shards"]
    # THEN the plan chose the most rows that fit a builder, and says so
    rows = record["rows_per_grove"]
    assert 2 < rows < 32_000
    assert f"rows_per_grove={rows}, the most that fit" in record["why"]
    estimate = training.estimate_grove_mb(rows, 12, 3, _parsed(table, run_id))
    assert (
        estimate + 1
        <= 208
        < 1 + training.estimate_grove_mb(rows + 64, 12, 3, _parsed(table, run_id))
    )
    assert out["merge"]["groves_built"] == 3


def _training_rows(table: Path, request: Any) -> tuple[np.ndarray, np.ndarray]:
    """The table's training rows by groveflow's split, read whole (as a run that fits)."""
    import pyarrow.parquet as pq

    from groveflow.training import test_mask

    data = pq.read_table(table)
    y = data.column("label").to_numpy(zero_copy_only=False).astype(str)
    X = np.column_stack(
        [data.column(c).to_numpy() for c in data.column_names if c != "label"]
    ).astype(np.float32)
    codes = np.unique(y, return_inverse=True)[1]
    test = test_mask(len(y), codes, request)
    return X[~test], y[~test]


def _grove_bytes(X: np.ndarray, y: np.ndarray, grove: dict[str, Any]) -> bytes:
    from groveflow import artifact
    from groveflow.request import make_estimator

    estimator = make_estimator(
        "random_forest",
        "classification",
        {"max_depth": 6},
        n_trees=grove["n_trees"],
        seed=grove["seed"],
        classes=np.unique(y),
    )
    estimator.fit(X, y)
    return artifact.encode_trees(
        estimator.estimators_, n_features=X.shape[1], classes=estimator.classes_
    )


def _parsed(table: Path, run_id: str) -> Any:
    from groveflow.request import parse_train_request

    return parse_train_request(_request(table, run_id))


@pytest.mark.parametrize(
    ("more", "memory", "error", "words"),
    [
        ({"rows_per_grove": 40_000}, 3008, InvalidRequest, "more than the training split's 32000"),
        ({"rows_per_grove": 2}, 3008, InvalidRequest, "3 classes need at least one row each"),
        ({"rows_per_grove": 30_000}, 205, DatasetTooLarge, "more than its 205 MB: at most"),
        (
            {"rows_per_grove": 1_000, "model": {"params": {"oob_score": True}}},
            3008,
            InvalidRequest,
            "OOB scores",
        ),
    ],
)
def test_a_bad_rows_per_grove_is_refused_by_name_and_stores_nothing(
    s3_env: Any, table: Path, more: dict[str, Any], memory: int, error: type, words: str
) -> None:
    run_id = unique_name("bad-rows")
    with pytest.raises(error, match=words):
        _run(s3_env, _request(table, run_id, **more), builder_memory_mb=memory)
    assert _stored(s3_env, run_id) == []


def test_rows_per_grove_on_data_read_whole_is_refused_by_name(s3_env: Any) -> None:
    run_id = unique_name("npy-rows")
    request = {"data": {"uri": "sklearn:wine"}, "n_trees": 2, "rows_per_grove": 50}
    with pytest.raises(InvalidRequest, match="convert it to Parquet"):
        training.plan_run(
            {"request": request, "execution_name": run_id},
            bucket=s3_env.bucket,
            builder_memory_mb=3008,
        )
    assert _stored(s3_env, run_id) == []


# ------------------------------------------------------- through the state machine, enforced


def _float_table(path: Path, rows: int, features: int) -> None:
    """``rows`` x ``features`` float32 columns and a 0/1 label, written a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    weights = rng.normal(size=features) / np.sqrt(features)
    schema = pa.schema(
        [*(pa.field(f"f{i}", pa.float32()) for i in range(features)), pa.field("label", pa.int8())]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            X = rng.normal(size=(n, features)).astype(np.float32)
            y = (X @ weights + np.sin(3 * X[:, 0]) + rng.normal(scale=0.5, size=n)) > 0
            columns = [pa.array(X[:, i]) for i in range(features)] + [pa.array(y.astype(np.int8))]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def test_data_larger_than_the_plan_and_builders_trains_with_their_memory_enforced(
    tmp_path: Path,
) -> None:
    import groveflow
    from groveflow.engines import Local

    # GIVEN 400 MB of float32 features, and a plan and builders of 320 MB each, enforced
    memory, rows, features = 320, 1_048_576, 100
    table = tmp_path / "large.parquet"
    _float_table(table, rows, features)
    request = {
        "data": {"uri": str(table), "target": "label"},
        "n_trees": 8,
        "grove_size": 2,
        "model": {"params": {"max_depth": 10}},
    }
    parameters = {"PlanMemorySize": memory, "BuilderMemorySize": memory}
    # WHEN it trains on the local engine
    with Local(workers=2, state_dir=tmp_path / "state", parameters=parameters) as engine:
        result = groveflow.train(request, engine=engine, run_id=unique_name("larger"))
    # THEN it finished, no function over its memory, each grove on a sample it could hold
    assert result.succeeded, (result.cause, result.memory)
    assert rows * features * 4 / 2**20 == 400
    for stage in ("Plan", "BuildGroves"):
        use = result.memory[stage]
        assert use.memory_mb == memory and use.out_of_memory == 0
        assert use.max_memory_used_mb is not None and use.max_memory_used_mb <= memory
    seen = result.output["data"]
    n_train = seen["n_train"]
    assert seen["rows_per_grove"] is not None and seen["grove_rows"] == seen["rows_per_grove"]
    assert seen["grove_rows"] * features * 4 < (memory - 200) * 2**20 < n_train * features * 4
    # AND its holdout accuracy is scikit-learn's, with max_samples the groves' share of the
    # same training rows, within sampling noise
    import pyarrow.parquet as pq
    from sklearn.ensemble import RandomForestClassifier

    from groveflow.request import parse_train_request
    from groveflow.training import test_mask

    data = pq.read_table(table)
    y = data.column("label").to_numpy().astype(np.int64)
    X = np.column_stack([data.column(j).to_numpy() for j in range(features)])
    del data
    test = test_mask(len(y), y, parse_train_request(request))
    share = seen["rows_per_grove"] / n_train
    theirs = []
    for seed in range(3):
        reference = RandomForestClassifier(
            n_estimators=8, max_depth=10, max_samples=share, n_jobs=2, random_state=seed
        ).fit(X[~test], y[~test])
        theirs.append(float((reference.predict(X[test]) == y[test]).mean()))
    # (a forest of 8 trees varies with its seed more than the 210,000 held-out rows' sampling:
    # within the spread of scikit-learn's own seeds, widened by a point)
    ours = result.metrics["accuracy"]
    assert min(theirs) - 0.01 <= ours <= max(theirs) + 0.01, (ours, theirs)


def test_a_search_on_data_that_needs_row_shards_is_refused_by_name(
    s3_env: Any, table: Path
) -> None:
    from groveflow.tuning import plan_search

    # GIVEN a search whose training split does not fit its 208 MB builders
    search_id = unique_name("search-shards")
    request = {
        **_request(table, search_id),
        "search": {"space": {"max_features": ["sqrt", 0.8]}, "strategy": "grid", "metric": "oob"},
        "model": {"params": {"max_depth": 6, "oob_score": True}},
    }
    event = {"request": request, "execution_name": search_id, "state_machine": "shards-test"}
    converted = ingest(event, bucket=s3_env.bucket, local_paths=True)["converted"]
    # THEN it is refused before anything is stored, saying why and what to do
    with pytest.raises(DatasetTooLarge, match="a search holds its split in one function"):
        plan_search(
            {**event, "converted": converted},
            bucket=s3_env.bucket,
            builder_memory_mb=208,
            local_paths=True,
        )
    assert _stored(s3_env, search_id) == []


def test_the_local_engine_takes_template_parameter_overrides_checked_as_cloudformation_would(
    tmp_path: Path,
) -> None:
    from groveflow.engines import EngineError, Local
    from groveflow.local.template import ParameterError, load_template

    root = Path(__file__).resolve().parents[1]
    # GIVEN overrides of the builders' and the plan's memory THEN the functions get them
    stack = load_template(
        root, bucket="b", parameters={"BuilderMemorySize": 512, "PlanMemorySize": "640"}
    )
    assert stack.functions["BuildGroveFunction"].memory_mb == 512
    assert stack.functions["PlanFunction"].memory_mb == 640
    assert stack.functions["MergeFunction"].memory_mb == 3008  # the default
    # AND what CloudFormation would refuse is refused by name, with what is accepted
    for parameters, words in [
        ({"BuilderMemory": 512}, "not parameters of the template"),
        ({"BuilderMemorySize": "512.5"}, "is not a whole number (accepted: 256 to 10240)"),
        ({"BuilderMemorySize": 128}, "out of range; accepted: 256 to 10240"),
    ]:
        with pytest.raises(ParameterError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_template(root, bucket="b", parameters=parameters)
    with pytest.raises(EngineError, match="BuilderMemory"):
        _ = Local(state_dir=tmp_path, parameters={"BuilderMemory": 512}).engine


def test_a_split_the_plan_would_not_finish_in_its_time_left_is_refused_before_writing(
    s3_env: Any, table: Path
) -> None:
    # GIVEN a run that needs row shards and a plan with 5 s left after its first pass
    run_id = unique_name("no-time")
    request = _request(table, run_id, rows_per_grove=3_000)
    event = {"request": request, "execution_name": run_id, "state_machine": "shards-test"}
    converted = ingest(event, bucket=s3_env.bucket, local_paths=True)["converted"]
    # THEN it is refused by name, with the figures and what to change, and stores nothing
    with pytest.raises(DatasetTooLarge, match=r"needs about \d+ s more, and the plan has 5 s left"):
        training.plan_run(
            {**event, "converted": converted},
            bucket=s3_env.bucket,
            builder_memory_mb=3008,
            local_paths=True,
            seconds_left=lambda: 5.0,
        )
    assert _stored(s3_env, run_id) == []

""".npz columns are read by name, as a CSV's are: one rule for every file to score.

A model trained on an ``.npz`` file with ``feature_names`` knows those names; an ``.npz`` file to
score that has names must give exactly the model's features in the model's order (otherwise the
plan refuses it by name, before any shard), and only a file without names (``.npy``, or an
``.npz`` file without ``feature_names``) is read by position. Each test runs the real state
machines on the shared local engine.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from groveflow.layout import keys

NAMES = ["sl", "sw", "pl", "pw"]
SMALL = {"n_trees": 6, "grove_size": 3, "seed": 2}


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    bunch = load_iris()
    return bunch.data, bunch.target


def _npz(path: Path, X: np.ndarray, names: list[str] | None, **arrays: Any) -> Path:
    if names is not None:
        arrays["feature_names"] = np.array(names)
    np.savez(path, X=X, y=np.zeros(len(X), dtype=np.int64), **arrays)
    return path


def _manifest(engine: Any, run_id: str) -> dict[str, Any]:
    body = engine.s3.get_object(Bucket=engine.bucket, Key=keys.manifest(run_id))["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def _predict(engine: Any, run_id: str, uri: Path) -> tuple[Any, str]:
    """The predict execution's result, and its prediction id."""
    name = unique_name("npz-scores")
    request = {"model": run_id, "data": {"uri": str(uri)}, "probabilities": True}
    return engine.run("PredictStateMachine", request, name=name, run_id=name), name


def _scores(engine: Any, predicted: tuple[Any, str]) -> list[dict[str, str]]:
    result, _ = predicted
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    bucket, _, key = result.output["predictions_uri"].removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        body = engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"].read()
        rows.extend(csv.DictReader(io.StringIO(body.decode())))
    return rows


def _refused_before_any_shard(engine: Any, predicted: tuple[Any, str]) -> str:
    result, prediction_id = predicted
    assert (result.status, result.error) == ("FAILED", "InvalidPredictRequest"), result.cause
    assert not any(i.function == "ScoreShardFunction" for i in result.invocations)
    listing = engine.s3.list_objects_v2(
        Bucket=engine.bucket, Prefix=keys.predictions_manifest(prediction_id)
    )
    assert listing.get("KeyCount", 0) == 0
    cause: str = result.cause
    return cause


@pytest.fixture(scope="module")
def named_model(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A forest trained on iris as an .npz with names [sl, sw, pl, pw], and a directory."""
    directory = tmp_path_factory.mktemp("npz-columns")
    X, y = _iris()
    np.savez(directory / "train.npz", X=X, y=y, feature_names=np.array(NAMES))
    run_id = unique_name("npz-named")
    request = {"data": {"uri": str(directory / "train.npz")}, **SMALL, "run_id": run_id}
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return run_id, directory


def test_the_model_knows_the_archive_s_names_and_refuses_them_reversed(
    engine: Any, named_model: tuple[str, Path]
) -> None:
    # GIVEN a forest trained on an .npz with names, and its rows saved in order and reversed
    run_id, directory = named_model
    X, _ = _iris()
    ordered = _npz(directory / "ordered.npz", X, NAMES)
    reversed_ = _npz(directory / "reversed.npz", X[:, ::-1], NAMES[::-1])
    # WHEN both are scored
    good = _predict(engine, run_id, ordered)
    bad = _predict(engine, run_id, reversed_)
    # THEN the model carries the archive's names, the ordered rows score all 150 rows,
    assert _manifest(engine, run_id)["feature_names"] == NAMES
    assert len(_scores(engine, good)) == 150
    # and the reversed ones are refused before any shard, naming both orders (as a CSV's are)
    cause = _refused_before_any_shard(engine, bad)
    assert "another order" in cause
    assert str(NAMES[::-1]) in cause and str(NAMES) in cause


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["sl", "sw", "pl", "petal_w"], "missing ['pw'], extra ['petal_w']"),
        (["sl", "sw", "pl"], "missing ['pw'], extra []"),
    ],
    ids=["renamed", "dropped"],
)
def test_an_archive_missing_a_model_feature_is_refused_by_name(
    engine: Any, named_model: tuple[str, Path], names: list[str], words: str
) -> None:
    # GIVEN an .npz whose names lack the model's 'pw' (renamed, same column count; or dropped)
    run_id, directory = named_model
    X, _ = _iris()
    path = _npz(directory / f"{unique_name('lacking')}.npz", X[:, : len(names)], names)
    # WHEN it is scored
    result = _predict(engine, run_id, path)
    # THEN it is refused by name before any shard
    assert words in _refused_before_any_shard(engine, result)


def test_an_archive_whose_names_do_not_fit_its_columns_is_refused(
    engine: Any, named_model: tuple[str, Path]
) -> None:
    # GIVEN an .npz of 4 columns with 3 names (which name which column is unknown)
    run_id, directory = named_model
    X, _ = _iris()
    path = _npz(directory / "three-names.npz", X, NAMES[:3])
    # WHEN it is scored
    result = _predict(engine, run_id, path)
    # THEN it is refused before any shard, giving both counts
    cause = _refused_before_any_shard(engine, result)
    assert "3 feature_names" in cause and "4 columns" in cause


def test_an_archive_without_names_is_read_by_position(
    engine: Any, named_model: tuple[str, Path]
) -> None:
    # GIVEN the model's rows as an .npz with names, the same without names, and 3 columns unnamed
    run_id, directory = named_model
    X, _ = _iris()
    named = _npz(directory / "named.npz", X, NAMES)
    unnamed = _npz(directory / "unnamed.npz", X, None)
    short = _npz(directory / "short.npz", X[:, :3], None)
    # WHEN they are scored
    by_name = _scores(engine, _predict(engine, run_id, named))
    by_position = _scores(engine, _predict(engine, run_id, unnamed))
    refused = _predict(engine, run_id, short)
    # THEN the unnamed columns are taken in the model's order: the answers are the same,
    assert by_position == by_name
    # and a count that differs is refused, saying the columns are read by position
    cause = _refused_before_any_shard(engine, refused)
    assert "by position" in cause and "feature_names" in cause


def test_a_training_predict_section_refuses_reversed_names_before_fan_out(
    engine: Any, named_model: tuple[str, Path]
) -> None:
    # GIVEN a training input whose predict section is an .npz with the columns reversed
    _, directory = named_model
    X, _ = _iris()
    reversed_ = _npz(directory / "section-reversed.npz", X[:, ::-1], NAMES[::-1])
    run_id = unique_name("npz-section")
    request = {
        "data": {"uri": str(directory / "train.npz")},
        **SMALL,
        "run_id": run_id,
        "predict": {"data": {"uri": str(reversed_)}},
    }
    # WHEN it trains
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the plan refuses it by name before any grove is built
    assert (result.status, result.error) == ("FAILED", "InvalidPredictRequest"), result.cause
    assert "another order" in result.cause
    assert [i.function for i in result.invocations] == ["PlanFunction"]


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["sl", "sw", "pl"], "3 feature_names"),
        (["sl", "sw", "sl", "pw"], "['sl']"),
    ],
    ids=["three-names", "repeated-name"],
)
def test_a_training_archive_whose_names_do_not_name_its_columns_is_refused(
    engine: Any, tmp_path: Path, names: list[str], words: str
) -> None:
    # GIVEN a training .npz whose feature_names do not give each of its 4 columns its own name
    X, y = _iris()
    np.savez(tmp_path / "train.npz", X=X, y=y, feature_names=np.array(names))
    run_id = unique_name("npz-bad-names")
    request = {"data": {"uri": str(tmp_path / "train.npz")}, **SMALL, "run_id": run_id}
    # WHEN it trains
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the plan refuses it by name before any grove is built (no model with wrong names)
    assert (result.status, result.error) == ("FAILED", "InvalidDataset"), result.cause
    assert words in result.cause
    assert [i.function for i in result.invocations] == ["PlanFunction"]

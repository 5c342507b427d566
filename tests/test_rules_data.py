"""Data rules a careless user meets (issue 26): one rule on every path and format.

Each test runs the real state machines on the shared local engine, with small data and few
trees: what a user of ``groveflow train``/``predict`` (or ``groveflow.train``) sees.
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

SMALL = {"n_trees": 4, "grove_size": 2, "seed": 1}


def _train(engine: Any, data: dict[str, Any], **extra: Any) -> tuple[Any, str]:
    run_id = unique_name("rules")
    request = {"data": data, **SMALL, "run_id": run_id, **extra}
    return engine.run("TrainStateMachine", request, name=run_id), run_id


def _manifest(engine: Any, run_id: str) -> dict[str, Any]:
    body = engine.s3.get_object(Bucket=engine.bucket, Key=keys.manifest(run_id))["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def _predict(engine: Any, run_id: str, data: dict[str, Any]) -> Any:
    name = unique_name("rules-scores")
    request = {"model": run_id, "data": data, "probabilities": True}
    return engine.run("PredictStateMachine", request, name=name, run_id=name)


def _prediction_rows(engine: Any, predictions_uri: str) -> list[dict[str, str]]:
    bucket, _, key = predictions_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        body = engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"].read()
        rows.extend(csv.DictReader(io.StringIO(body.decode())))
    return rows


def _matrix(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


# --------------------------------------------------------------------------- item 2


@pytest.mark.parametrize("fmt", ["sklearn", "npy", "npz"])
def test_features_and_exclude_choose_a_matrix_s_features_by_name(
    engine: Any, tmp_path: Path, fmt: str
) -> None:
    # GIVEN a matrix dataset (bundled, .npy with the target last, .npz with feature names)
    X, y = _matrix(tmp_path)
    if fmt == "sklearn":
        data: dict[str, Any] = {"uri": "sklearn:iris"}
        names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    elif fmt == "npy":
        np.save(tmp_path / "d.npy", np.column_stack([X, y]))
        data, names = {"uri": str(tmp_path / "d.npy")}, ["x0", "x1", "x2"]
    else:
        names = ["leak", "b", "c"]
        np.savez(tmp_path / "d.npz", X=X, y=y, feature_names=np.array(names))
        data = {"uri": str(tmp_path / "d.npz")}
    # WHEN it trains with a column excluded (a leak), and with features chosen
    dropped, dropped_id = _train(engine, {**data, "exclude": [names[0]]})
    chosen, chosen_id = _train(engine, {**data, "features": [names[2], names[1]]})
    # THEN the forest has exactly the features asked for, in that order
    assert dropped.status == "SUCCEEDED", dropped.cause
    assert _manifest(engine, dropped_id)["feature_names"] == names[1:]
    assert chosen.status == "SUCCEEDED", chosen.cause
    assert _manifest(engine, chosen_id)["feature_names"] == [names[2], names[1]]


@pytest.mark.parametrize("key", ["features", "exclude"])
@pytest.mark.parametrize("fmt", ["sklearn", "npy"])
def test_a_name_that_is_not_a_matrix_feature_is_refused_before_fan_out(
    engine: Any, tmp_path: Path, fmt: str, key: str
) -> None:
    # GIVEN a matrix dataset and a feature name it does not have
    X, y = _matrix(tmp_path)
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    data = {"uri": "sklearn:iris" if fmt == "sklearn" else str(tmp_path / "d.npy")}
    # WHEN it trains with that name in data.features or data.exclude
    result, _ = _train(engine, {**data, key: ["petal_length"]})
    # THEN Plan refuses it by name, listing the names the matrix's features have
    assert (result.status, result.error) == ("FAILED", "InvalidDataset"), result.cause
    assert "['petal_length']" in result.cause
    assert ("petal length (cm)" if fmt == "sklearn" else "'x0'") in result.cause
    assert [i.function for i in result.invocations] == ["PlanFunction"]


def test_a_matrix_to_score_drops_its_excluded_columns_by_name(engine: Any, tmp_path: Path) -> None:
    # GIVEN a forest trained on two of a .npy file's three feature columns
    X, y = _matrix(tmp_path)
    np.save(tmp_path / "train.npy", np.column_stack([X, y]))
    np.save(tmp_path / "score.npy", X[:10])
    trained, run_id = _train(engine, {"uri": str(tmp_path / "train.npy"), "exclude": ["x1"]})
    assert trained.status == "SUCCEEDED", trained.cause
    # WHEN the three-column rows are scored with the same column excluded, and with a typo
    scored = _predict(engine, run_id, {"uri": str(tmp_path / "score.npy"), "exclude": ["x1"]})
    typo = _predict(engine, run_id, {"uri": str(tmp_path / "score.npy"), "exclude": ["x9"]})
    # THEN the first scores every row, and the typo is refused by name
    assert scored.status == "SUCCEEDED", scored.cause
    assert scored.output["n_rows"] == 10
    assert (typo.status, typo.error) == ("FAILED", "InvalidPredictRequest"), typo.cause
    assert "['x9']" in typo.cause


# --------------------------------------------------------------------------- item 3


def test_text_labels_lose_surrounding_spaces_as_features_do(engine: Any, tmp_path: Path) -> None:
    # GIVEN a CSV whose labels are written with and without surrounding spaces
    rows = [f"{i},{i % 7},{[' cat', 'cat', 'dog ', 'dog'][i % 4]}" for i in range(60)]
    (tmp_path / "pets.csv").write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    # WHEN it trains
    result, run_id = _train(engine, {"uri": str(tmp_path / "pets.csv"), "target": "kind"})
    # THEN there are two classes, spelled without the spaces
    assert result.status == "SUCCEEDED", result.cause
    assert _manifest(engine, run_id)["classes"] == ["cat", "dog"]


def test_a_boolean_target_keeps_its_classes_false_and_true(engine: Any, tmp_path: Path) -> None:
    # GIVEN a CSV whose target is true/false
    rows = [f"{i},{'true' if i % 3 else 'false'}" for i in range(60)]
    (tmp_path / "flags.csv").write_text("a,flag\n" + "\n".join(rows) + "\n")
    batch = tmp_path / "batch.csv"
    batch.write_text("a\n1\n3\n")
    # WHEN it trains and scores a batch with probabilities
    result, run_id = _train(engine, {"uri": str(tmp_path / "flags.csv"), "target": "flag"})
    assert result.status == "SUCCEEDED", result.cause
    scored = _predict(engine, run_id, {"uri": str(batch)})
    # THEN the classes are the booleans (as GroveForestClassifier's classes_), in the manifest,
    # the predictions and the probability columns' names
    assert _manifest(engine, run_id)["classes"] == [False, True]
    assert scored.status == "SUCCEEDED", scored.cause
    rows_out = _prediction_rows(engine, scored.output["predictions_uri"])
    assert list(rows_out[0]) == ["row", "prediction", "proba_False", "proba_True"]
    assert {r["prediction"] for r in rows_out} <= {"False", "True"}


# --------------------------------------------------------------------------- Parquet (items 4, 10, 19)


def _parquet(path: Path, columns: dict[str, Any], index: list[str] | None = None) -> str:
    """A Parquet file; ``index``: columns its pandas metadata marks as the DataFrame's index
    (what ``DataFrame.to_parquet`` writes for an index it keeps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if index is not None:
        pandas = {
            "index_columns": index,
            "column_indexes": [],
            "columns": [
                {"name": n, "field_name": n, "pandas_type": "int64", "numpy_type": "int64"}
                for n in columns
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3",
        }
        table = table.replace_schema_metadata({b"pandas": json.dumps(pandas).encode()})
    pq.write_table(table, path)
    return str(path)


def _sorted_by_class(n_rows: int) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    label = np.sort(rng.integers(0, 2, n_rows))  # sorted by class: the row number leaks it
    return {"a": rng.normal(size=n_rows) + 0.3 * label, "b": rng.normal(size=n_rows), "y": label}


def test_a_pandas_index_stored_in_parquet_is_not_a_feature(engine: Any, tmp_path: Path) -> None:
    # GIVEN a subset of a DataFrame saved with its index (df.loc[idx].to_parquet(path)), and
    # rows to score saved without one (index=False)
    columns = _sorted_by_class(120)
    rows = np.arange(0, 240, 2)
    train = _parquet(tmp_path / "train.parquet", {**columns, "__index_level_0__": rows}, index=["__index_level_0__"])  # fmt: skip
    batch = _parquet(tmp_path / "batch.parquet", {"a": columns["a"][:7], "b": columns["b"][:7]})
    # WHEN it trains, then scores the batch
    result, run_id = _train(engine, {"uri": train, "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    scored = _predict(engine, run_id, {"uri": batch})
    # THEN the index is not a feature, and rows without it are scored
    assert _manifest(engine, run_id)["feature_names"] == ["a", "b"]
    assert scored.status == "SUCCEEDED", scored.cause
    assert scored.output["n_rows"] == 7


def test_a_named_pandas_index_is_read_when_the_request_names_it(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN rows to score saved with a named index (df.set_index("customer").to_parquet())
    columns = _sorted_by_class(60)
    train = _parquet(tmp_path / "train.parquet", columns)
    customers = np.array([f"c{i}" for i in range(5)])
    batch = {"customer": customers, "a": columns["a"][:5], "b": columns["b"][:5]}
    batch_uri = _parquet(tmp_path / "batch.parquet", batch, index=["customer"])
    result, run_id = _train(engine, {"uri": train, "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    # WHEN they are scored with the index as the id column, and without naming it
    with_ids = _predict(engine, run_id, {"uri": batch_uri, "id_column": "customer"})
    without = _predict(engine, run_id, {"uri": batch_uri})
    # THEN the ids are the index's values, and unnamed, the index is not an extra column
    assert with_ids.status == "SUCCEEDED", with_ids.cause
    rows = _prediction_rows(engine, with_ids.output["predictions_uri"])
    assert [r["id"] for r in rows] == customers.tolist()
    assert without.status == "SUCCEEDED", without.cause


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_64_bit_integers_with_missing_cells_are_read(engine: Any, tmp_path: Path, fmt: str) -> None:
    import pyarrow as pa

    # GIVEN 64-bit ids and hashes: an int64 column beyond 2**53 with a missing cell, and (in
    # Parquet) a uint64 column beyond 2**63
    columns = _sorted_by_class(60)
    big = [2**60 + i if i != 4 else None for i in range(60)]
    if fmt == "csv":
        text = "\n".join(
            f"{'' if big[i] is None else big[i]},{columns['a'][i]},{columns['b'][i]},{columns['y'][i]}"
            for i in range(60)
        )
        (tmp_path / "d.csv").write_text("id,a,b,y\n" + text + "\n")
        uri, excluded = str(tmp_path / "d.csv"), ["id"]
    else:
        hashes = pa.array([2**64 - 1 - i for i in range(60)], pa.uint64())
        table = {"id": pa.array(big, pa.int64()), "hash": hashes, **columns}
        uri, excluded = _parquet(tmp_path / "d.parquet", table), ["id", "hash"]
    # WHEN it trains with them excluded, and with them as features
    dropped, _ = _train(engine, {"uri": uri, "target": "y", "exclude": excluded})
    kept, kept_id = _train(engine, {"uri": uri, "target": "y"})
    # THEN both runs succeed (a feature beyond 2**53 is its nearest float)
    assert dropped.status == "SUCCEEDED", dropped.cause
    assert kept.status == "SUCCEEDED", kept.cause
    assert _manifest(engine, kept_id)["feature_names"] == [*excluded, "a", "b"]


def test_parquet_files_that_disagree_on_a_column_s_type_are_refused(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN a prefix of two Parquet files: "size" is text in one and numbers in the other
    (tmp_path / "parts").mkdir()
    columns = _sorted_by_class(40)
    first = {"size": np.array(["S", "M"] * 20), **columns}
    _parquet(tmp_path / "parts" / "part-0.parquet", first)
    _parquet(tmp_path / "parts" / "part-1.parquet", {"size": np.arange(40.0) / 2, **columns})
    data = {"uri": str(tmp_path / "parts"), "target": "y", "categorical": "auto"}
    # WHEN it trains
    result, _ = _train(engine, data)
    # THEN it fails before fan-out, naming the column, both types and both files
    assert (result.status, result.error) == ("FAILED", "InvalidDataset"), result.cause
    for words in ("'size'", "part-0.parquet", "part-1.parquet", "double", "string"):
        assert words in result.cause
    assert "BuildGroveFunction" not in [i.function for i in result.invocations]


# --------------------------------------------------------------------------- items 14, 17


def _table_csv(path: Path, n_rows: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = [f"{i},{rng.normal():.3f},{rng.normal():.3f},{i % 2}" for i in range(n_rows)]
    path.write_text("id,a,b,y\n" + "\n".join(lines) + "\n")
    return str(path)


def test_a_header_only_file_of_a_prefix_to_score_adds_no_rows(engine: Any, tmp_path: Path) -> None:
    # GIVEN a forest, and a directory to score holding a file of rows and a header-only file
    result, run_id = _train(engine, {"uri": _table_csv(tmp_path / "t.csv", 60), "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "part-0.csv").write_text("id,a,b\n1,0.5,0.1\n2,-0.3,0.2\n")
    (tmp_path / "batch" / "part-1.csv").write_text("id,a,b\n")
    # WHEN the directory is scored, and the header-only file alone
    scored = _predict(engine, run_id, {"uri": str(tmp_path / "batch")})
    alone = _predict(engine, run_id, {"uri": str(tmp_path / "batch" / "part-1.csv")})
    # THEN the directory's rows are scored (as training reads it), and the file alone is refused
    assert scored.status == "SUCCEEDED", scored.cause
    assert scored.output["n_rows"] == 2
    assert (alone.status, alone.error) == ("FAILED", "InvalidPredictRequest"), alone.cause
    assert "part-1.csv has no rows to score" in alone.cause


def test_column_errors_name_the_user_s_file_not_the_ingested_part(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN a CSV with a text feature, and a forest whose batch to score has a text cell
    text = tmp_path / "colours.csv"
    text.write_text("a,colour,y\n" + "\n".join(f"{i},red,{i % 2}" for i in range(20)) + "\n")
    result, run_id = _train(engine, {"uri": _table_csv(tmp_path / "t.csv", 60), "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    batch = tmp_path / "batch.csv"
    batch.write_text("id,a,b\n1,0.5,oops\n")
    # WHEN the first trains and the batch is scored
    refused, _ = _train(engine, {"uri": str(text), "target": "y"})
    scored = _predict(engine, run_id, {"uri": str(batch)})
    # THEN each error names the user's file (and points at data.categorical for text)
    assert refused.error == "InvalidDataset", refused.cause
    assert str(text) in refused.cause and ".gfcols" not in refused.cause
    assert "data.categorical" in refused.cause
    assert scored.error == "InvalidPredictRequest", scored.cause
    assert str(batch) in scored.cause and ".gfcols" not in scored.cause


def test_an_id_column_that_is_a_feature_is_both(engine: Any, tmp_path: Path) -> None:
    # GIVEN a forest that reads the column "id" as a feature
    result, run_id = _train(engine, {"uri": _table_csv(tmp_path / "t.csv", 60), "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    assert _manifest(engine, run_id)["feature_names"] == ["id", "a", "b"]
    # WHEN rows are scored naming "id" as their id column
    batch = tmp_path / "batch.csv"
    batch.write_text("id,a,b\n7,0.5,0.1\n9,-0.3,0.2\n")
    scored = _predict(engine, run_id, {"uri": str(batch), "id_column": "id"})
    # THEN it is both the rows' ids and their feature
    assert scored.status == "SUCCEEDED", scored.cause
    rows = _prediction_rows(engine, scored.output["predictions_uri"])
    assert [r["id"] for r in rows] == ["7", "9"]


def test_a_one_hot_feature_may_not_repeat_another_column_s_name(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN a table with a text column "color" and a numeric column named "color=red"
    lines = [f"{['red', 'blue'][i % 2]},{i % 3},{i % 2}" for i in range(40)]
    (tmp_path / "d.csv").write_text("color,color=red,y\n" + "\n".join(lines) + "\n")
    # WHEN it trains with one-hot encoding
    data = {"uri": str(tmp_path / "d.csv"), "target": "y", "categorical": "auto"}
    result, _ = _train(engine, data)
    # THEN it is refused by the repeated name before fan-out
    assert (result.status, result.error) == ("FAILED", "InvalidDataset"), result.cause
    assert "'color=red'" in result.cause and "rename" in result.cause
    assert "BuildGroveFunction" not in [i.function for i in result.invocations]


# --------------------------------------------------------------------------- item 22


def test_an_integer_quantity_left_to_classification_is_refused_by_name(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN house prices, whole numbers of dollars, and no model.task
    rng = np.random.default_rng(5)
    area = rng.uniform(50, 300, 200)
    price = (area * 1500 + rng.integers(0, 40_000, 200)).astype(np.int64)
    lines = [f"{a:.1f},{p}" for a, p in zip(area, price, strict=True)]
    (tmp_path / "houses.csv").write_text("area,price\n" + "\n".join(lines) + "\n")
    data = {"uri": str(tmp_path / "houses.csv"), "target": "price"}
    # WHEN it trains, as the split's old advice said, with test_fraction 0; then as regression
    guessed, _ = _train(engine, data, test_fraction=0)
    regression, _ = _train(engine, data, model={"task": "regression"})
    # THEN the classification is refused, naming model.task, before fan-out; regression trains
    assert (guessed.status, guessed.error) == ("FAILED", "InvalidDataset"), guessed.cause
    assert "model.task to 'regression'" in guessed.cause
    assert "BuildGroveFunction" not in [i.function for i in guessed.invocations]
    assert regression.status == "SUCCEEDED", regression.cause


def test_class_codes_are_classes_however_many(engine: Any, tmp_path: Path) -> None:
    # GIVEN 30 classes given as codes 0..29 in 40 rows (what LabelEncoder gives)
    rng = np.random.default_rng(6)
    codes = np.arange(40) % 30
    np.save(tmp_path / "d.npy", np.column_stack([rng.normal(size=(40, 2)), codes]))
    # WHEN it trains as a classification on every row
    result, run_id = _train(engine, {"uri": str(tmp_path / "d.npy")}, test_fraction=0)
    # THEN the codes are the classes
    assert result.status == "SUCCEEDED", result.cause
    assert _manifest(engine, run_id)["classes"] == list(range(30))


@pytest.mark.parametrize(("key", "value", "where"), [
    ("categorical", "auto", "data.categorical"),
    ("target", "label", "data.target"),
    ("task", "regression", "model.task"),
])  # fmt: skip
def test_a_data_or_model_key_at_the_top_level_names_its_section(
    engine: Any, key: str, value: str, where: str
) -> None:
    # GIVEN a request with a data or model key written at the top level
    # WHEN it is started
    result, _ = _train(engine, {"uri": "sklearn:iris"}, **{key: value})
    # THEN it is refused, naming where the key belongs
    assert (result.status, result.error) == ("FAILED", "InvalidRequest"), result.cause
    assert f"as {where}" in result.cause


# --------------------------------------------------------------------------- item 21


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_missing_markers_are_missing_in_every_format_s_text(
    engine: Any, tmp_path: Path, fmt: str
) -> None:
    # GIVEN a table whose text feature and target spell some cells None and "-"
    n_rows = 40
    kind = [["brick", "None", "stone", "-"][i % 4] for i in range(n_rows)]
    label = [["yes", "no"][i % 2] for i in range(n_rows)]
    columns = {"a": np.arange(n_rows, dtype=np.float64), "kind": kind, "y": label}
    uri = _parquet(tmp_path / "d.parquet", columns) if fmt == "parquet" else str(tmp_path / "d.csv")
    if fmt == "csv":
        lines = [f"{i},{kind[i]},{label[i]}" for i in range(n_rows)]
        (tmp_path / "d.csv").write_text("a,kind,y\n" + "\n".join(lines) + "\n")
    data = {"uri": uri, "target": "y", "categorical": "auto"}
    # WHEN it trains, and when its target holds them too
    result, run_id = _train(engine, data)
    missing_target = {**columns, "y": [*label[:-1], "None"]}
    if fmt == "parquet":
        _parquet(tmp_path / "d.parquet", missing_target)
    else:
        lines = [f"{i},{kind[i]},{missing_target['y'][i]}" for i in range(n_rows)]
        (tmp_path / "d.csv").write_text("a,kind,y\n" + "\n".join(lines) + "\n")
    refused, _ = _train(engine, data)
    # THEN they are one missing category, not categories, and a missing target is refused
    assert result.status == "SUCCEEDED", result.cause
    assert _manifest(engine, run_id)["feature_names"] == [
        "a",
        "kind=(missing)",
        "kind=brick",
        "kind=stone",
    ]
    assert (refused.status, refused.error) == ("FAILED", "InvalidDataset"), refused.cause
    assert "1 rows have no target value" in refused.cause


def test_the_predictions_manifest_names_the_user_s_files_and_an_empty_prefix_is_refused(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN a forest, a directory of two files to score, and a directory of header-only files
    result, run_id = _train(engine, {"uri": _table_csv(tmp_path / "t.csv", 60), "target": "y"})
    assert result.status == "SUCCEEDED", result.cause
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "part-0.csv").write_text("id,a,b\n1,0.5,0.1\n")
    (tmp_path / "batch" / "part-1.csv").write_text("id,a,b\n2,-0.3,0.2\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "part-0.csv").write_text("id,a,b\n")
    # WHEN both are scored
    scored = _predict(engine, run_id, {"uri": str(tmp_path / "batch")})
    empty = _predict(engine, run_id, {"uri": str(tmp_path / "empty")})
    # THEN the manifest's parts name the user's files, and the empty directory is refused
    assert scored.status == "SUCCEEDED", scored.cause
    bucket, _, key = scored.output["predictions_uri"].removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert [p["source"] for p in manifest["parts"]] == [
        str(tmp_path / "batch" / "part-0.csv"),
        str(tmp_path / "batch" / "part-1.csv"),
    ]
    assert (empty.status, empty.error) == ("FAILED", "InvalidPredictRequest"), empty.cause
    assert "has no rows to score" in empty.cause


def test_a_training_run_s_predict_section_of_no_rows_is_refused_before_fan_out(
    engine: Any, tmp_path: Path
) -> None:
    # GIVEN a training input whose predict section names a directory of header-only files
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "part-0.csv").write_text("id,a,b\n")
    data = {"uri": _table_csv(tmp_path / "t.csv", 60), "target": "y"}
    # WHEN it is started
    result, _ = _train(engine, data, predict={"data": {"uri": str(tmp_path / "empty")}})
    # THEN Plan refuses it before any grove is built
    assert (result.status, result.error) == ("FAILED", "InvalidRequest"), result.cause
    assert "has no rows to score" in result.cause
    assert "BuildGroveFunction" not in [i.function for i in result.invocations]

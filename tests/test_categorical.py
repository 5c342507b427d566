"""Categorical, text, boolean and date columns (data.categorical): the encoding, its storage,
its scikit-learn form, and a run that trains and scores on such a table end to end."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from groveflow.encoding import CategoricalSpec, Encoding, fit, parse_categorical
from groveflow.errors import ArtifactError, InvalidDataset, InvalidPredictRequest, InvalidRequest

COLORS = ["red", "green", "blue", "amber"]
SIZES = ["S", "M", "L", "XL"]


def _table(seed: int, n_rows: int) -> dict[str, list[str]]:
    """Raw columns as a CSV holds them (text), with missing cells in every column."""
    rng = np.random.default_rng(seed)
    cells: dict[str, list[str]] = {
        "amount": [f"{v:.4f}" for v in rng.normal(50, 20, n_rows)],
        "color": [COLORS[i] for i in rng.integers(0, len(COLORS), n_rows)],
        "size": [SIZES[i] for i in rng.integers(0, len(SIZES), n_rows)],
        "member": [["true", "false", "True"][i] for i in rng.integers(0, 3, n_rows)],
        "since": [
            f"20{y:02d}-{m:02d}-{d:02d}"
            for y, m, d in zip(
                rng.integers(10, 25, n_rows),
                rng.integers(1, 13, n_rows),
                rng.integers(1, 29, n_rows),
                strict=True,
            )
        ],
        "note": [["first", "repeat", "vip"][i] for i in rng.integers(0, 3, n_rows)],
    }
    for name, column in cells.items():
        for row in rng.choice(n_rows, n_rows // 12, replace=False):
            column[row] = ["", "NA", "null"][row % 3] if name != "amount" else ""
    return cells


def _label(cells: dict[str, list[str]]) -> np.ndarray:
    warm = np.isin(cells["color"], ["red", "amber"])
    big = np.isin(cells["size"], ["L", "XL"])
    return np.where(warm ^ big, "churn", "stay")


def _rows(cells: dict[str, list[str]], names: list[str]) -> np.ndarray:
    """The raw table as a 2-D object array (what a user hands the exported Pipeline)."""
    return np.array(
        [list(row) for row in zip(*(cells[n] for n in names), strict=True)], dtype=object
    )


# --------------------------------------------------------------------------- the encoding


def test_categories_are_learned_from_the_training_rows_only() -> None:
    # GIVEN a column whose value "violet" is only in a row outside the training rows
    columns = {"color": np.array(["red", "blue", "violet", "red"]), "x": np.arange(4.0)}
    # WHEN the encoding is learned from rows 0, 1 and 3
    encoding = fit(columns, ["color", "x"], np.array([0, 1, 3]), CategoricalSpec())
    # THEN "violet" is not a category, and its row encodes as all zeros
    assert encoding.feature_names == ["color=blue", "color=red", "x"]
    X = encoding.transform(columns)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X[:, :2], [[0, 1], [1, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(X[:, 2], [0, 1, 2, 3])


def test_unknown_and_missing_values_follow_the_documented_rules() -> None:
    # GIVEN one-hot and ordinal columns learned with a missing value in one-hot only
    train = {
        "color": ["red", "", "blue", "red"],
        "size": ["M", "S", "M", "L"],
        "since": ["2024-01-31", "1970-01-02T12:00:00Z", "", "2000-03-01 06:00:00+06:00"],
        "member": ["true", "FALSE", "na", "True"],
    }
    spec = CategoricalSpec(encodings={"size": "ordinal"})
    encoding = fit(train, list(train), None, spec)
    assert [c.kind for c in encoding.columns] == ["onehot", "ordinal", "date", "numeric"]
    assert encoding.feature_names == [
        "color=(missing)",
        "color=blue",
        "color=red",
        "size",
        "since",
        "member",
    ]
    # WHEN a batch holds an unseen color and size and missing values everywhere
    batch = {
        "color": ["violet", "NULL", " red "],
        "size": ["XXL", "?", "S"],
        "since": ["1970-01-01", "", "2024-01-31T18:00"],
        "member": ["", "false", "true"],
    }
    X = encoding.transform(batch)
    # THEN an unseen category is all zeros (one-hot) or NaN (ordinal), a missing one-hot value
    # is its own category (it was seen in training), a missing ordinal/date/boolean is NaN,
    # text is stripped, booleans are 1/0 and dates are days since the epoch
    nan = np.nan
    expected = [
        [0, 0, 0, nan, 0.0, nan],
        [1, 0, 0, nan, nan, 0],
        [0, 0, 1, 2, 19753.75, 1],
    ]
    np.testing.assert_array_equal(X, np.array(expected, dtype=np.float32))
    # and the training dates with an offset are converted to UTC
    np.testing.assert_array_equal(
        encoding.transform(train)[:, 4], np.array([19753, 1.5, nan, 11017], dtype=np.float32)
    )


def test_a_missing_value_never_seen_in_training_is_all_zeros_in_one_hot() -> None:
    encoding = fit({"color": ["red", "blue"]}, ["color"], None, CategoricalSpec())
    assert encoding.feature_names == ["color=blue", "color=red"]
    np.testing.assert_array_equal(encoding.transform({"color": ["", "blue"]}), [[0, 0], [1, 0]])


def test_a_number_or_boolean_is_one_category_however_a_reader_gives_it() -> None:
    # GIVEN categories learned from text (as a user's raw rows hold them)
    columns = {"zip": ["02139", "10001", "1.50"], "vip": ["TRUE", "false", "True"]}
    spec = CategoricalSpec(columns=("zip", "vip"))
    encoding = fit(columns, ["zip", "vip"], None, spec)
    assert encoding.feature_names == ["zip=1.5", "zip=10001", "zip=2139", "vip=false", "vip=true"]
    # WHEN the same values come as numbers and booleans (as the Ingest step reads them)
    typed = {"zip": np.array([2139, 10001, 1.5]), "vip": np.array([True, False, True])}
    # THEN they encode the same
    np.testing.assert_array_equal(encoding.transform(typed), encoding.transform(columns))


def test_the_encoding_round_trips_through_json_and_refuses_a_damaged_document() -> None:
    cells = _table(0, 200)
    encoding = fit(cells, list(cells), None, CategoricalSpec(encodings={"note": "ordinal"}))
    stored = json.loads(json.dumps(encoding.to_dict()))
    assert Encoding.from_dict(stored) == encoding
    damaged: list[Any] = [
        {**stored, "encoding_version": 2},
        {**stored, "columns": []},
        {**stored, "columns": stored["columns"] + stored["columns"][:1]},
        {**stored, "columns": [{**stored["columns"][1], "kind": "hash"}]},
        {**stored, "columns": [{**stored["columns"][1], "categories": ["red", "blue"]}]},
        {**stored, "columns": [{**stored["columns"][1], "categories": []}]},
        {**stored, "columns": [{**stored["columns"][0], "categories": ["a"]}]},
        {**stored, "columns": [{"name": "", "kind": "numeric", "categories": []}]},
        [stored],
    ]
    for document in damaged:
        with pytest.raises(ArtifactError):
            Encoding.from_dict(document, "the test's encoding")


def test_a_one_hot_column_over_the_cap_is_refused_with_its_count() -> None:
    # GIVEN a column of 70 distinct values (the default cap is 64)
    columns = {"city": [f"city-{i % 70}" for i in range(300)]}
    # WHEN it is one-hot encoded THEN the refusal names the column, the count and the options
    with pytest.raises(InvalidDataset, match=r"'city'.* 70 distinct values.*max_categories=64"):
        fit(columns, ["city"], None, CategoricalSpec())
    with pytest.raises(InvalidDataset, match="ordinal"):
        fit(columns, ["city"], None, CategoricalSpec(max_categories=69))
    # and raising the cap, or encoding it as ordinal, is accepted
    assert len(fit(columns, ["city"], None, CategoricalSpec(max_categories=70)).feature_names) == 70
    assert fit(columns, ["city"], None, CategoricalSpec(encoding="ordinal")).feature_names == [
        "city"
    ]


def test_text_columns_not_named_are_refused_and_named_numbers_are_categories() -> None:
    columns = {"zip": ["02139", "10001", "02139"], "color": ["a", "b", "a"], "x": ["1", "2", "3"]}
    with pytest.raises(InvalidDataset, match=r"\['color'\].*data.categorical"):
        fit(columns, ["zip", "color", "x"], None, CategoricalSpec(columns=("zip",)))
    encoding = fit(columns, ["zip", "color", "x"], None, CategoricalSpec(columns=("zip", "color")))
    assert encoding.feature_names == ["zip=10001", "zip=2139", "color=a", "color=b", "x"]
    with pytest.raises(InvalidDataset, match=r"\['town'\] that are not feature columns"):
        fit(columns, ["zip", "color", "x"], None, CategoricalSpec(columns=("town",)))


def test_a_date_column_refuses_a_value_that_is_not_a_date_by_name() -> None:
    encoding = fit({"since": ["2024-01-31", ""]}, ["since"], None, CategoricalSpec())
    assert encoding.columns[0].kind == "date"
    with pytest.raises(InvalidPredictRequest, match=r"'since' of batch\.csv: '31/01/2024'"):
        encoding.transform({"since": ["31/01/2024"]}, "batch.csv", InvalidPredictRequest)
    with pytest.raises(InvalidDataset, match="'2024-02-30' is not a valid date"):
        fit(
            {"since": ["2024-02-30", "x"]},
            ["since"],
            None,
            CategoricalSpec(encodings={"since": "date"}),
        )
    # a column of dates and other text is categorical unless told otherwise
    assert (
        fit({"d": ["2024-01-31", "soon"]}, ["d"], None, CategoricalSpec()).columns[0].kind
        == "onehot"
    )


def test_the_request_section_is_validated_with_named_errors() -> None:
    assert parse_categorical("auto") == CategoricalSpec()
    assert parse_categorical(["a"]) == CategoricalSpec(columns=("a",))
    for bad, message in [
        ({"columns": "all"}, "must be 'auto' or a list"),
        ({"encoding": "hash"}, "encoding='hash' is not supported"),
        ({"max_categories": 0}, "max_categories must be an integer"),
        ({"columns": ["a"], "encodings": {"b": "ordinal"}}, "names 'b', which"),
        ({"encodings": {"a": "embedding"}}, r"encodings\['a'\]='embedding'"),
        ({"colums": "auto"}, "did you mean 'columns'"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            parse_categorical(bad)


def test_a_data_section_may_not_encode_its_target_or_an_excluded_column() -> None:
    from groveflow.request import parse_train_request

    data = {"uri": "t.csv", "target": "label", "exclude": ["id"]}
    for categorical, message in [
        (["label"], "names the target 'label'"),
        ({"encodings": {"id": "ordinal"}}, "names 'id', which data.exclude drops"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            parse_train_request({"data": {**data, "categorical": categorical}})
    request = parse_train_request({"data": {**data, "categorical": "auto"}})
    # and the request (so the run record) reads back as it was given
    assert parse_train_request(request.to_dict()) == request
    assert "categorical" not in parse_train_request({"data": data}).to_dict()["data"]


def test_a_scoring_file_is_read_by_its_raw_columns_and_refused_by_their_names(
    tmp_path: Any,
) -> None:
    from groveflow.datasets import read_scoring_file, write_columns
    from groveflow.request import DataSpec

    # GIVEN a model's encoding of a color column and a number column
    train = {"color": np.array(["red", "blue", "red"]), "x": np.array([1.0, 2.0, 3.0])}
    encoding = fit(train, ["color", "x"], None, CategoricalSpec())
    spec = DataSpec(uri=str(tmp_path), format="columns")

    def scoring_file(names: list[str], columns: list[np.ndarray]) -> str:
        path = tmp_path / f"{'-'.join(names)}.gfcols"
        write_columns(path, names, columns)
        return str(path)

    # WHEN a file with an unseen color, no blue, and an id column is read
    good = scoring_file(
        ["id", "color", "x"],
        [np.array(["a", "b"]), np.array(["violet", "red"]), np.array([5.0, np.nan])],
    )
    X, ids = read_scoring_file(good, spec, encoding.feature_names, "id", encoding)
    # THEN it is encoded as in training
    np.testing.assert_array_equal(X, np.array([[0, 0, 5], [0, 1, np.nan]], dtype=np.float32))
    assert ids is not None and ids.tolist() == ["a", "b"]
    # and columns are matched by their raw names, not the encoded ones
    swapped = scoring_file(["x", "color"], [np.array([1.0]), np.array(["red"])])
    with pytest.raises(InvalidPredictRequest, match="another order"):
        read_scoring_file(swapped, spec, encoding.feature_names, None, encoding)
    lacking = scoring_file(["x"], [np.array([1.0])])
    with pytest.raises(InvalidPredictRequest, match=r"missing \['color'\]"):
        read_scoring_file(lacking, spec, encoding.feature_names, None, encoding)


def test_load_forest_reads_the_manifest_encoding_and_refuses_a_damaged_one(tmp_path: Any) -> None:
    import hashlib

    from sklearn.ensemble import RandomForestClassifier

    from groveflow.artifact import decode_trees, encode_forest_file, encode_trees, load_forest

    # GIVEN a model directory whose manifest stores the encoding its forest was fitted through
    cells = _table(4, 120)
    encoding = fit(cells, list(cells), None, CategoricalSpec())
    X = encoding.transform(cells)
    fitted = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, _label(cells))
    blob = encode_forest_file(
        decode_trees(
            encode_trees(fitted.estimators_, n_features=X.shape[1], classes=fitted.classes_)
        )
    )
    (tmp_path / "forest.gfa").write_bytes(blob)
    forest_entry = {"key": "forest.gfa", "sha256": hashlib.sha256(blob).hexdigest()}

    def model_dir(stored: Any) -> str:
        (tmp_path / "manifest.json").write_text(
            json.dumps({"forest": forest_entry, "encoding": stored})
        )
        return str(tmp_path)

    # WHEN it is loaded THEN the forest carries the encoding, and to_sklearn() is the pipeline
    forest = load_forest(model_dir(encoding.to_dict()))
    assert forest.encoding == encoding
    assert [name for name, _ in forest.to_sklearn().steps] == ["encode", "forest"]
    # and a manifest without one loads a plain forest, as before data.categorical
    assert load_forest(model_dir(None)).encoding is None
    # and a damaged encoding, or one of another width than the forest, is refused by name
    damaged = {**encoding.to_dict(), "encoding_version": 9}
    with pytest.raises(ArtifactError, match=r"encoding in the manifest.*encoding_version=9"):
        load_forest(model_dir(damaged))
    narrower = {**encoding.to_dict(), "columns": encoding.to_dict()["columns"][:2]}
    with pytest.raises(ArtifactError, match="features; the forest has"):
        load_forest(model_dir(narrower))


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_column_transformer_pipeline_predicts_exactly_as_groveflow(task: str) -> None:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from groveflow.artifact import decode_trees, encode_trees

    # GIVEN an encoding learned on training rows and groveflow's forest fitted on its features
    cells = _table(1, 400)
    names = list(cells)
    train = np.arange(300)
    spec = CategoricalSpec(encodings={"note": "ordinal"})
    encoding = fit(cells, names, train, spec)
    X = encoding.transform(cells)
    label = _label(cells)
    if task == "classification":
        y: np.ndarray = label
        sklearn_forest: Any = RandomForestClassifier(n_estimators=8, random_state=0)
    else:
        y = np.where(label == "churn", 1.0, 0.0) + np.nan_to_num(X[:, 0].astype(np.float64)) / 100
        sklearn_forest = RandomForestRegressor(n_estimators=8, random_state=0)
    sklearn_forest.fit(X[train], y[train])
    classes = sklearn_forest.classes_ if task == "classification" else None
    forest = decode_trees(
        encode_trees(sklearn_forest.estimators_, n_features=X.shape[1], classes=classes)
    )
    forest.encoding = encoding
    # WHEN the exported form (encoder + forest) scores the raw rows, including a batch with
    # unseen categories and none of some seen ones
    pipeline = forest.to_sklearn("random_forest", {})
    batch = {**cells, "color": ["violet"] * 400, "size": ["XS", "M"] * 200}
    for raw_columns in (cells, batch):
        raw = _rows(raw_columns, names)
        ours = (
            forest.predict_proba(encoding.transform(raw_columns))
            if task == "classification"
            else forest.predict(encoding.transform(raw_columns))
        )
        theirs = pipeline.predict_proba(raw) if task == "classification" else pipeline.predict(raw)
        # THEN the answers are the same bit for bit (max |diff| = 0)
        assert np.max(np.abs(ours - theirs)) == 0
        np.testing.assert_array_equal(
            pipeline.predict(raw), forest.predict(encoding.transform(raw_columns))
        )
    assert [name for name, _ in pipeline.steps] == ["encode", "forest"]


# --------------------------------------------------------------------------- end to end


def _write_csv(path: Any, cells: dict[str, list[str]], extra: dict[str, list[str]]) -> None:
    import csv

    columns = {**cells, **extra}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values(), strict=True))


def _parts(engine: Any, predictions_uri: str) -> list[dict[str, str]]:
    import csv
    import io

    bucket, _, key = predictions_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        body = engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"].read()
        rows.extend(csv.DictReader(io.StringIO(body.decode())))
    return rows


def _export(run_id: str, state_dir: Any, out: Any) -> Any:
    import subprocess
    import sys

    import joblib

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "groveflow.cli", "export", run_id, "--format", "joblib",
         "--state-dir", str(state_dir), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return joblib.load(out)


def test_a_table_of_text_categories_booleans_and_dates_trains_scores_and_exports(
    engine: Any, state_dir: Any, tmp_path: Any
) -> None:
    from conftest import unique_name
    from groveflow.artifact import load_forest
    from groveflow.layout import keys

    # GIVEN a CSV with numeric, categorical, boolean, date and free-text columns, missing
    # values in each, and a string target
    cells = _table(2, 600)
    _write_csv(tmp_path / "customers.csv", cells, {"label": _label(cells).tolist()})
    # and a scoring batch lacking most categories and holding unseen ones (and missing cells)
    batch = _table(5, 90)
    batch["color"] = [["red", "violet", ""][i % 3] for i in range(90)]
    batch["size"] = [["M", "XXL", "?"][i % 3] for i in range(90)]
    batch["note"] = [["first", "brand-new"][i % 2] for i in range(90)]
    _write_csv(tmp_path / "batch.csv", {"customer": [f"c{i}" for i in range(90)], **batch}, {})
    run_id = unique_name("categorical")
    request = {
        "data": {
            "uri": str(tmp_path / "customers.csv"),
            "target": "label",
            "categorical": {"columns": "auto", "encodings": {"size": "ordinal"}},
        },
        "n_trees": 12,
        "grove_size": 4,
        "seed": 3,
        "run_id": run_id,
        "predict": {"data": {"uri": str(tmp_path / "batch.csv"), "id_column": "customer"}},
    }
    # WHEN it trains on the local engine through the real state machine, then scores the batch
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the run succeeds, and the manifest stores the encoding learned from its training rows
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    body = engine.s3.get_object(Bucket=engine.bucket, Key=keys.manifest(run_id))["Body"].read()
    manifest = json.loads(body)
    encoding = Encoding.from_dict(manifest["encoding"])
    kinds = {c.name: c.kind for c in encoding.columns}
    assert kinds == {
        "amount": "numeric",
        "color": "onehot",
        "size": "ordinal",
        "member": "numeric",
        "since": "date",
        "note": "onehot",
    }
    assert manifest["feature_names"] == encoding.feature_names
    assert "color=(missing)" in manifest["feature_names"]
    assert encoding.columns[2].categories == ("L", "M", "S", "XL")
    assert result.output["metrics"]["accuracy"] > 0.9
    # and the batch was checked against the raw columns at plan, then scored
    assert result.output["predictions"]["n_rows"] == 90

    # WHEN the predict state machine scores the batch again on its own (what groveflow.predict runs)
    name = unique_name("categorical-scores")
    scored = engine.run(
        "PredictStateMachine",
        {
            "model": run_id,
            "data": {"uri": str(tmp_path / "batch.csv"), "id_column": "customer"},
            "shard_rows": 40,
            "probabilities": True,
        },
        name=name,
        run_id=name,
    )
    # THEN it predicts every row
    assert scored.status == "SUCCEEDED", (scored.error, scored.cause)
    rows = _parts(engine, scored.output["predictions_uri"])
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(90)]
    proba = np.array([[float(r["proba_churn"]), float(r["proba_stay"])] for r in rows])

    # and the model loaded by groveflow and the exported Pipeline, on the raw rows, answer
    # exactly as the prediction run did (max |diff| = 0)
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.encoding == encoding
    np.testing.assert_array_equal(forest.predict_proba(encoding.transform(batch)), proba)
    pipeline = _export(run_id, state_dir, tmp_path / "model.joblib")
    raw = _rows(batch, encoding.input_names)
    assert np.max(np.abs(pipeline.predict_proba(raw) - proba)) == 0
    assert pipeline.predict(raw).tolist() == [r["prediction"] for r in rows]


def test_a_one_hot_column_over_the_cap_fails_the_run_by_name_before_fan_out(
    engine: Any, tmp_path: Any
) -> None:
    from conftest import unique_name

    # GIVEN a table whose text column has 80 distinct values
    cells = _table(3, 200)
    cells["note"] = [f"ticket-{i % 80}" for i in range(200)]
    _write_csv(tmp_path / "wide.csv", cells, {"label": _label(cells).tolist()})
    run_id = unique_name("categorical-cap")
    request = {
        "data": {"uri": str(tmp_path / "wide.csv"), "target": "label", "categorical": "auto"},
        "n_trees": 4,
        "run_id": run_id,
    }
    # WHEN it trains with one-hot encoding and the default cap
    result = engine.run("TrainStateMachine", request, name=run_id)
    # THEN the plan refuses it, naming the column and its count of training values, and
    # no grove was built
    assert result.status == "FAILED"
    assert result.error == "InvalidDataset"
    assert "'note'" in result.cause and "distinct values in the training rows" in result.cause
    assert "max_categories=64" in result.cause
    assert not [i for i in result.invocations if i.function == "BuildGroveFunction"]

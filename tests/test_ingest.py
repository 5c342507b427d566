"""The Ingest step: CSV and Parquet read by pyarrow into the columnar parts the plan reads."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groveflow import ingest as ingest_module
from groveflow.datasets import MISSING_MARKERS, read_columns
from groveflow.errors import DatasetNotFound, InvalidDataset
from groveflow.ingest import ingest, ingest_file, missing_values
from groveflow.request import DataSpec


def _columns(tmp_path: Path, name: str, content: bytes | str, **data: Any) -> dict[str, Any]:
    """Write ``content`` as file ``name``, ingest it, and read back its parts' columns."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    scratch = tmp_path / f"{name}-parts"
    scratch.mkdir()
    names, parts, _ = ingest_file(str(path), DataSpec(uri=str(path), **data), scratch)
    read = [read_columns(part, name) for part in parts]
    return {n: np.concatenate([columns[n] for columns in read]) for n in names}


def test_types_quoting_missing_markers_and_a_bom(tmp_path: Path) -> None:
    # GIVEN a CSV with a BOM, a quoted header name holding the delimiter, a quoted field holding
    # a newline and a doubled quote, missing markers in several letter cases, and typed columns
    content = (
        '\ufeff"height, cm",count,flag,kind,day,at\n'
        '1.5,1,true,"a ""big""\ncat",2024-01-31,2024-01-31T12:00:00\n'
        "NaN,2,false,NULL,2024-02-01,2024-02-01 13:30:00\n"
        " 3 ,N/a,,dog,,\n"
    )
    # WHEN it is ingested
    columns = _columns(tmp_path, "d.csv", content)
    # THEN numbers are float64 (missing: NaN), integers with a missing value are float64,
    # booleans with a missing value are 0/1/NaN, text stays text (missing: ""), and dates and
    # timestamps are ISO text
    assert list(columns) == ["height, cm", "count", "flag", "kind", "day", "at"]
    np.testing.assert_array_equal(columns["height, cm"], [1.5, np.nan, 3.0])
    np.testing.assert_array_equal(columns["count"], [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(columns["flag"], [1.0, 0.0, np.nan])
    assert columns["kind"].dtype.kind == "U"
    assert columns["kind"].tolist() == ['a "big"\ncat', "", "dog"]
    assert columns["day"].tolist() == ["2024-01-31", "2024-02-01", ""]
    assert columns["at"].tolist() == ["2024-01-31 12:00:00", "2024-02-01 13:30:00", ""]


def test_complete_integer_and_boolean_columns_keep_their_types(tmp_path: Path) -> None:
    columns = _columns(tmp_path, "d.csv", "n,b,x\n1,true,0.5\n2,false,1.5\n")
    assert columns["n"].dtype == np.int64 and columns["n"].tolist() == [1, 2]
    assert columns["b"].dtype == np.bool_ and columns["b"].tolist() == [True, False]
    assert columns["x"].dtype == np.float64


def test_every_letter_case_of_every_missing_marker_is_missing(tmp_path: Path) -> None:
    # GIVEN a numeric column holding each documented marker in lower, upper and title case
    markers = sorted({c for m in MISSING_MARKERS for c in (m, m.upper(), m.title())})
    assert set(markers) <= set(missing_values())
    content = "x,y\n" + "".join(f"{marker},{i}\n" for i, marker in enumerate(markers)) + "4.5,0\n"
    # WHEN it is ingested
    columns = _columns(tmp_path, "d.csv", content)
    # THEN each marker is NaN and the column is still numeric
    assert columns["x"].dtype == np.float64
    assert np.isnan(columns["x"][:-1]).all() and columns["x"][-1] == 4.5


def test_tsv_delimiter_and_gzip(tmp_path: Path) -> None:
    tsv = _columns(tmp_path, "d.tsv", "a\tb\n1\tx\n2\ty\n")
    assert tsv["a"].tolist() == [1, 2] and tsv["b"].tolist() == ["x", "y"]
    semicolon = _columns(tmp_path, "s.csv", "a;b\n1;2\n", delimiter=";")
    assert list(semicolon) == ["a", "b"]
    gz = _columns(tmp_path, "d.csv.gz", gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert gz["b"].tolist() == [2, 4]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "blank.csv",
            "a,,c\n1,2,3\n",
            r"blank or repeated column name in its header: \['a', '', 'c'\]",
        ),
        ("repeated.csv", "a, a,c\n1,2,3\n", r"blank or repeated column name .*\['a', 'a', 'c'\]"),
        (
            "ragged.csv",
            "a,b,label\n1,2,x\n\n3,4\n",
            "ragged.csv line 3 has 2 fields; the header has 3",
        ),
        ("latin1.csv", "a,b\ncaf\xe9,1\n".encode("latin-1"), "latin1.csv is not UTF-8 text"),
        ("empty.csv", "", "empty.csv is empty: a CSV needs a header row and data rows"),
        ("broken.csv.gz", b"not gzip at all", "broken.csv.gz is not a readable gzip file"),
        ("broken.parquet", b"PAR1 not really", "broken.parquet is not a readable Parquet file"),
    ],
)
def test_bad_files_are_refused_by_name(
    tmp_path: Path, name: str, content: bytes | str, message: str
) -> None:
    with pytest.raises(InvalidDataset, match=message):
        _columns(tmp_path, name, content)


def test_a_ragged_row_deep_in_a_streamed_file_is_named_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "BLOCK_BYTES", 1000)
    monkeypatch.setattr(ingest_module, "RANGE_BLOCK_BYTES", 1000)
    monkeypatch.setattr(ingest_module, "WHOLE_READ_BYTES", 0)
    content = "a,b\n" + "".join(f"{i},{i}\n" for i in range(3000)) + "7\n"
    with pytest.raises(InvalidDataset, match=r"deep\.csv line 3002 has 1 fields; the header has 2"):
        _columns(tmp_path, "deep.csv", content)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match=r"absent\.csv"):
        ingest_file(str(tmp_path / "absent.csv"), DataSpec(uri="absent.csv"), tmp_path)


@pytest.mark.parametrize("whole_read_bytes", [2**30, 0], ids=["read-at-once", "streamed"])
def test_a_column_whose_later_blocks_widen_it_is_read_again_wider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_read_bytes: int
) -> None:
    # GIVEN blocks far smaller than the file: pyarrow infers types from the first block only
    monkeypatch.setattr(ingest_module, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(ingest_module, "RANGE_BLOCK_BYTES", 1024)
    monkeypatch.setattr(ingest_module, "WHOLE_READ_BYTES", whole_read_bytes)
    rows = [f"{i},{i},{i}" for i in range(2000)]
    content = "ints,floats,text\n" + "\n".join(rows) + "\n7,7.5,seven\n"
    # WHEN a late row holds a fraction in one integer column and a word in another
    columns = _columns(tmp_path, "d.csv", content)
    # THEN the first widens to float64 and the second to text, with every row kept
    assert columns["ints"].dtype == np.int64 and len(columns["ints"]) == 2001
    assert columns["floats"].dtype == np.float64 and columns["floats"][-1] == 7.5
    assert columns["text"].dtype.kind == "U" and columns["text"][-1] == "seven"
    assert columns["text"][0] == "0"


@pytest.mark.parametrize("whole_read_bytes", [2**30, 0], ids=["read-at-once", "streamed"])
def test_quoted_line_breaks_across_blocks_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_read_bytes: int
) -> None:
    # GIVEN quoted values holding line breaks, in a file of many blocks (pyarrow cuts blocks
    # at line breaks unless told values may hold them)
    monkeypatch.setattr(ingest_module, "BLOCK_BYTES", 1000)
    monkeypatch.setattr(ingest_module, "RANGE_BLOCK_BYTES", 1000)
    monkeypatch.setattr(ingest_module, "WHOLE_READ_BYTES", whole_read_bytes)
    content = "n,note,x\n" + "".join(f'{i},"line one\nline two",{i}.5\n' for i in range(2000))
    # WHEN it is ingested
    columns = _columns(tmp_path, "notes.csv", content)
    # THEN every row is read whole, once
    assert columns["n"].tolist() == list(range(2000))
    assert set(columns["note"].tolist()) == {"line one\nline two"}
    assert columns["x"][-1] == 1999.5


def _small_ranges(monkeypatch: pytest.MonkeyPatch, range_bytes: int) -> None:
    """Every CSV read by ranges of ``range_bytes`` (in blocks of at most 1 KiB)."""
    monkeypatch.setattr(ingest_module, "WHOLE_READ_BYTES", 0)
    monkeypatch.setattr(ingest_module, "RANGE_BYTES", range_bytes)
    monkeypatch.setattr(ingest_module, "RANGE_BLOCK_BYTES", 1024)


def test_ranges_of_lines_read_what_one_read_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file whose last rows widen two columns (a fraction in an integer column, a word
    # in another), read at once and by ranges of lines far smaller than the file
    monkeypatch.setattr(ingest_module, "PART_BYTES", 8192)
    path = tmp_path / "wide.csv"
    rows = "".join(f"{i},{i % 7},x{i % 3},{i * 0.25}\n" for i in range(6000))
    path.write_text("n,small,text,x\n" + rows + "6000,7.5,x0,1\n6001,3,9,NA\n")
    read = {}
    for how in ("at-once", "ranges"):
        if how == "at-once":
            monkeypatch.setattr(ingest_module, "WHOLE_READ_BYTES", 2**30)
        else:
            _small_ranges(monkeypatch, 5000)
        scratch = tmp_path / how
        scratch.mkdir()
        names, parts, count = ingest_file(str(path), DataSpec(uri=str(path)), scratch)
        columns = [read_columns(part, part.name) for part in parts]
        read[how] = (names, count, {n: np.concatenate([c[n] for c in columns]) for n in names})
    # THEN the columns, values and row order are the same
    assert read["at-once"][:2] == read["ranges"][:2] == (["n", "small", "text", "x"], 6002)
    for name in read["at-once"][0]:
        np.testing.assert_array_equal(read["at-once"][2][name], read["ranges"][2][name])
    assert read["ranges"][2]["small"][-2] == 7.5 and read["ranges"][2]["text"][-1] == "9"


def test_a_column_widened_within_the_first_range_is_read_again_wider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a first range of several blocks whose later block holds a fraction in an
    # integer column (pyarrow infers types from a range's first block)
    _small_ranges(monkeypatch, 2**20)
    content = "a,b\n" + "".join(f"{i},{i}\n" for i in range(3000)) + "1.5,x\n"
    # WHEN it is ingested
    columns = _columns(tmp_path, "d.csv", content)
    # THEN both columns widen, every row kept
    assert columns["a"].dtype == np.float64 and columns["a"][-1] == 1.5
    assert columns["b"].dtype.kind == "U" and columns["b"][-1] == "x" and len(columns["b"]) == 3001


@pytest.mark.parametrize("range_bytes", [7, 100, 1000])
def test_ranges_cut_inside_quoted_line_breaks_read_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, range_bytes: int
) -> None:
    # GIVEN quoted line breaks in the last column, and ranges cut at line breaks, some of
    # them inside a quoted value
    _small_ranges(monkeypatch, range_bytes)
    content = "n,x,note\n" + "".join(f'{i},{i}.5,"a\nb, c"\n' for i in range(2000))
    # WHEN it is ingested
    columns = _columns(tmp_path, "notes.csv", content)
    # THEN every row is read whole, once (by the serial reader, which allows quoted breaks)
    assert columns["n"].tolist() == list(range(2000))
    assert set(columns["note"].tolist()) == {"a\nb, c"}


def test_a_repeated_column_name_in_a_file_read_by_ranges_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_ranges(monkeypatch, 1000)
    content = "a, a,c\n" + "".join(f"{i},{i},{i}\n" for i in range(3000))
    with pytest.raises(InvalidDataset, match=r"blank or repeated column name .*\['a', 'a', 'c'\]"):
        _columns(tmp_path, "repeated.csv", content)


def test_a_big_file_becomes_parts_in_row_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "PART_BYTES", 20_000)
    _small_ranges(monkeypatch, 10_000)
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * 0.5}\n" for i in range(5000)))
    names, parts, rows = ingest_file(str(path), DataSpec(uri=str(path)), tmp_path)
    assert names == ["a", "b"] and rows == 5000 and len(parts) > 1
    read = [read_columns(part, part.name) for part in parts]
    np.testing.assert_array_equal(np.concatenate([r["a"] for r in read]), np.arange(5000))


def test_an_id_column_to_score_stays_text(tmp_path: Path, s3_env: Any) -> None:
    # GIVEN rows to score whose id column looks numeric but has leading zeros
    rows = tmp_path / "rows.csv"
    rows.write_text("id,a\n007,1.5\n010,2.5\n")
    event = {
        "request": {"model": "m", "data": {"uri": str(rows), "id_column": "id"}},
        "execution_name": "ids",
    }
    # WHEN the prediction input is ingested
    result = ingest(event, bucket=s3_env.bucket, local_paths=True)
    # THEN the columnar copy keeps the ids as written
    converted = result["converted"]["data"]
    assert converted["format"] == "columns" and converted["files"] == 1
    key = "converted/ids/data/part-00000.gfcols"
    part = tmp_path / "part.gfcols"
    part.write_bytes(s3_env.s3.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read())
    assert read_columns(part, key)["id"].tolist() == ["007", "010"]


def test_direct_formats_pass_through_and_csv_sections_are_ingested(
    tmp_path: Path, s3_env: Any
) -> None:
    # GIVEN a training input on bundled data whose predict section names a CSV
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n1,2\n")
    np.save(tmp_path / "d.npy", np.zeros((4, 3)))
    request = {"data": {"uri": "sklearn:iris"}, "predict": {"data": {"uri": str(rows)}}}
    # WHEN it is ingested
    result = ingest(
        {"request": request, "execution_name": "mixed"}, bucket=s3_env.bucket, local_paths=True
    )
    # THEN the request passes through, and only the CSV section was ingested
    assert result["request"] == request
    assert set(result["converted"]) == {"predict"}
    assert result["converted"]["predict"]["uri"] == f"s3://{s3_env.bucket}/converted/mixed/predict/"
    npy = {"data": {"uri": str(tmp_path / "d.npy")}}
    assert ingest({"request": npy}, bucket=s3_env.bucket, local_paths=True)["converted"] == {}


def test_a_train_and_a_predict_execution_of_one_name_do_not_share_their_parts(
    engine: Any, tmp_path: Path
) -> None:
    from conftest import unique_name

    # GIVEN a CSV to train on and a different CSV to score, and one execution name for both
    train = tmp_path / "train.csv"
    train.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n" + "".join(f"{i},{i % 5}\n" for i in range(7)))
    name = unique_name("same-name")
    trained = engine.run(
        "TrainStateMachine",
        {"data": {"uri": str(train), "target": "y"}, "n_trees": 2, "run_id": name},
        name=name,
    )
    assert trained.status == "SUCCEEDED", (trained.error, trained.cause)
    # WHEN a prediction execution of the same name ingests its rows
    scored = engine.run(
        "PredictStateMachine", {"model": name, "data": {"uri": str(rows)}}, name=name
    )
    # THEN each machine's parts are its own: the prediction scored its 7 rows
    assert scored.status == "SUCCEEDED", (scored.error, scored.cause)
    assert scored.output["n_rows"] == 7
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix="converted/")
    prefixes = {o["Key"].rsplit("/", 3)[0] for o in listed["Contents"] if f"/{name}/" in o["Key"]}
    assert len(prefixes) == 2, prefixes

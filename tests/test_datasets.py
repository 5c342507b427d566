"""Reading datasets: formats, sources, labels, and the errors that name bad data.

CSV and Parquet reach the plan as the Ingest step writes them (``.gfcols`` parts): these
tests ingest first, as a run does, then read what the plan reads.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groveflow.datasets import CONVERTED_FORMAT, Dataset, load_dataset
from groveflow.errors import DatasetNotFound, InvalidDataset
from groveflow.ingest import ingest_parts
from groveflow.request import DataSpec


def _ingested(spec: DataSpec, directory: Path) -> DataSpec:
    """Where the plan reads ``spec``'s data once the Ingest step has written it."""
    directory.mkdir(parents=True)
    for number, part in enumerate(ingest_parts(spec)):
        shutil.copy(part, directory / f"part-{number:05d}.gfcols")
    return replace(spec, uri=str(directory), format=CONVERTED_FORMAT)


def _load(scratch: Path, task: str = "classification", **data: Any) -> Dataset:
    """The dataset the plan reads from ``data`` once ingested (to ``scratch/ingested``)."""
    return load_dataset(_ingested(DataSpec(**data), scratch / "ingested"), task)


def test_csv_with_quotes_missing_markers_and_string_labels(tmp_path: Path) -> None:
    # GIVEN a CSV with a quoted header, quoted fields, missing markers and text labels
    (tmp_path / "d.csv").write_text(
        '"height, cm",weight,"kind"\n1.5,2,"cat"\nNA,3,dog\n2.5,,cat\n3.5,?,dog\n'
    )
    # WHEN it is read
    data = _load(tmp_path, uri=str(tmp_path / "d.csv"), target="kind")
    # THEN missing values are NaN, features are float32, labels are the user's strings
    assert data.feature_names == ["height, cm", "weight"]
    assert data.X.dtype == np.float32 and data.X.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(
        np.isnan(data.X), [[False, False], [True, False], [False, True], [False, True]]
    )
    assert data.y.tolist() == ["cat", "dog", "cat", "dog"]


def test_semicolon_delimiter_and_integer_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a;b;y\n1;2;0\n3;4;1\n5;6;1\n")
    data = _load(tmp_path, uri=str(tmp_path / "d.csv"), target="y", delimiter=";")
    assert data.y.dtype == np.int64 and data.y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4], [5, 6]])


def test_features_and_exclude_select_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,a,b,y\nx1,1,2,0\nx2,3,4,1\n")
    spec = _ingested(DataSpec(uri=str(tmp_path / "d.csv"), target="y"), tmp_path / "ingested")
    excluded = load_dataset(replace(spec, exclude=("id",)), "classification")
    assert excluded.feature_names == ["a", "b"]
    chosen = load_dataset(replace(spec, features=("b",)), "classification")
    assert chosen.feature_names == ["b"] and chosen.X[:, 0].tolist() == [2, 4]


def test_non_numeric_columns_are_named(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,colour,size,y\n1,red,S,0\n2,blue,M,1\n")
    with pytest.raises(InvalidDataset, match=r"\['colour', 'size'\]"):
        _load(tmp_path, uri=str(tmp_path / "d.csv"), target="y")


def test_a_directory_of_parts_is_read_in_name_order(tmp_path: Path) -> None:
    for part, rows in (
        ("part-0001.csv", "3,1\n4,0\n"),
        ("part-0000.csv", "1,1\n2,0\n"),
        ("_SUCCESS", ""),
    ):
        (tmp_path / part).write_text("a,y\n" + rows if rows else "")
    data = _load(tmp_path.with_name(tmp_path.name + "-out"), uri=str(tmp_path), target="y")
    assert data.X[:, 0].tolist() == [1, 2, 3, 4]


def test_parts_with_different_columns_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p0.csv").write_text("a,y\n1,0\n2,1\n")
    (tmp_path / "p1.csv").write_text("b,y\n1,0\n2,1\n")
    with pytest.raises(InvalidDataset, match=r"p1\.csv has columns"):
        _load(tmp_path.with_name(tmp_path.name + "-out"), uri=str(tmp_path), target="y")


def test_npz_npy_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y, feature_names=np.array(["p", "q"]))
    np.save(tmp_path / "d.npy", np.column_stack([y, X]))
    pq.write_table(
        pa.table({"p": X[:, 0], "q": X[:, 1], "label": ["a", "b"] * 3}), tmp_path / "d.parquet"
    )
    # Parquet is ingested (by a function of its own on AWS) to columnar .gfcols for the plan
    npz = load_dataset(DataSpec(uri=str(tmp_path / "d.npz")), "classification")
    npy = load_dataset(DataSpec(uri=str(tmp_path / "d.npy"), target="0"), "classification")
    parquet = _load(tmp_path, uri=str(tmp_path / "d.parquet"), target="label")
    with pytest.raises(InvalidDataset, match="PARQUET: the run's Ingest step reads it"):
        load_dataset(DataSpec(uri=str(tmp_path / "d.parquet"), target="label"), "classification")
    (tmp_path / "d.csv").write_text("p,q,label\n1,2,a\n")
    with pytest.raises(InvalidDataset, match="CSV: the run's Ingest step reads it"):
        load_dataset(DataSpec(uri=str(tmp_path / "d.csv"), target="label"), "classification")
    assert npz.feature_names == ["p", "q"]
    for data in (npz, npy, parquet):
        np.testing.assert_array_equal(data.X, X.astype(np.float32))
    assert npy.y.tolist() == y.tolist()
    assert parquet.y.tolist() == ["a", "b"] * 3


def test_regression_target_and_fractional_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,y\n1,0.5\n2,1.5\n3,2.5\n")
    spec = _ingested(DataSpec(uri=str(tmp_path / "d.csv"), target="y"), tmp_path / "ingested")
    data = load_dataset(spec, "regression")
    assert data.y.dtype == np.float64 and data.y.tolist() == [0.5, 1.5, 2.5]
    with pytest.raises(InvalidDataset, match="regression"):
        load_dataset(spec, "classification")


def test_missing_sources_raise_dataset_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound):
        _load(tmp_path, uri=str(tmp_path / "absent.csv"), target="y")
    with pytest.raises(DatasetNotFound):
        load_dataset(DataSpec(uri=str(tmp_path / "absent.npy")), "classification")
    with pytest.raises(DatasetNotFound, match="no data files"):
        load_dataset(DataSpec(uri=str(tmp_path), target="y"), "classification")
    with pytest.raises(DatasetNotFound, match="iris"):
        load_dataset(DataSpec(uri="sklearn:irises"), "classification")


def test_gzip_csv(tmp_path: Path) -> None:
    import gzip

    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(b"a,y\n1,0\n2,1\n"))
    data = _load(tmp_path, uri=str(tmp_path / "d.csv.gz"), target="y")
    assert data.X[:, 0].tolist() == [1, 2]


def test_values_beyond_float32_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1e300, 0], [1.0, 1]]))
    (tmp_path / "big.npy").write_bytes(buffer.getvalue())
    with pytest.raises(InvalidDataset, match="float32"):
        load_dataset(DataSpec(uri=str(tmp_path / "big.npy")), "classification")

"""Reading a training dataset into float32 features and user labels.

Sources: ``sklearn:NAME`` (bundled demo data), local paths, ``s3://bucket/key``
and ``s3://bucket/prefix/`` (every data file under the prefix, in key order).
Formats: CSV with a header, ``.npy`` (a 2-D array; the target is a column
index), ``.npz`` (arrays ``X`` and ``y``, optional ``feature_names``), Parquet.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groveflow import storage
from groveflow.errors import DatasetNotFound, InvalidDataset, InvalidRequest
from groveflow.request import DataSpec

__all__ = [
    "BUNDLED",
    "COLUMNS_SUFFIX",
    "CONVERTED_FORMAT",
    "Dataset",
    "check_readable",
    "load_dataset",
    "read_columns",
    "read_scoring_file",
    "sources",
    "to_features",
    "write_columns",
]

BUNDLED = {
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
}
MISSING_MARKERS = {"", "na", "nan", "n/a", "null", "none", "?", "-"}
COLUMNS_SUFFIX = ".gfcols"
CONVERTED_FORMAT = "columns"
"""The ``format`` of the columnar copy a run's conversion step writes (never a user's)."""
DATA_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".npy": "npy",
    ".npz": "npz",
    COLUMNS_SUFFIX: CONVERTED_FORMAT,
}


@dataclass(frozen=True)
class Dataset:
    """Features and labels ready to split.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), dtype float32, C order
    y : ndarray of shape (n_rows,)
        User labels (int64 or unicode strings) or float64 regression targets.
    feature_names : list of str
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]


def _format_of(name: str, spec: DataSpec) -> str:
    if spec.format:
        return spec.format
    lowered = name.lower().removesuffix(".gz")
    for suffix, fmt in DATA_SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    raise InvalidDataset(
        f"cannot tell the format of {name!r} from its extension; set data.format to one of "
        f"{sorted(set(DATA_SUFFIXES.values()))}"
    )


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if name not in BUNDLED:
        raise DatasetNotFound(f"no bundled dataset sklearn:{name}; accepted: {sorted(BUNDLED)}")
    from sklearn import datasets

    bunch = getattr(datasets, BUNDLED[name])()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    return np.asarray(bunch.data), np.asarray(bunch.target), names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_columns(data: bytes, delimiter: str, source: str) -> dict[str, list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidDataset(f"{source} is not UTF-8 text: {error}") from None
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    rows = [row for row in rows if row]
    if not rows:
        raise InvalidDataset(f"{source} is empty: a CSV needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or "" in header:
        raise InvalidDataset(
            f"{source} has a blank or repeated column name in its header: {header}"
        )
    body = rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InvalidDataset(
                f"{source} line {number} has {len(row)} fields; the header has {len(header)}"
            )
    return {name: [row[i].strip() for row in body] for i, name in enumerate(header)}


def _numeric_column(values: list[str]) -> np.ndarray | None:
    """Floats with NaN for missing markers, or None if any value is not a number."""
    out = np.empty(len(values), dtype=np.float64)
    for i, text in enumerate(values):
        if text.lower() in MISSING_MARKERS:
            out[i] = math.nan
        elif _is_number(text):
            out[i] = float(text)
        else:
            return None
    return out


def _table_from_columns(
    columns: dict[str, list[str]] | dict[str, np.ndarray], spec: DataSpec, source: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if spec.target is None:
        raise InvalidDataset(f"data.target is required for {source}: name the column to learn")
    if spec.target not in columns:
        raise InvalidDataset(
            f"target column {spec.target!r} is not in {source}; columns are: {list(columns)}"
        )
    unknown = [c for c in (spec.features or ()) + spec.exclude if c not in columns]
    if unknown:
        raise InvalidDataset(f"columns {unknown} are not in {source}; columns are: {list(columns)}")
    names = (
        list(spec.features)
        if spec.features is not None
        else [c for c in columns if c != spec.target and c not in spec.exclude]
    )
    if not names:
        raise InvalidDataset(f"{source} has no feature columns besides the target {spec.target!r}")
    features = _numeric_features(columns, names, source, InvalidDataset)
    return np.column_stack(features), _target_array(columns[spec.target]), names


def _numeric_features(
    columns: dict[str, Any], names: list[str], source: str, error: type[Exception]
) -> list[np.ndarray]:
    """The named columns as float64 arrays (NaN for missing markers); text columns are refused."""
    features, bad = [], []
    for name in names:
        raw = columns[name]
        column = _numeric_column(raw) if isinstance(raw, list) else _numeric_array(raw)
        if column is None:
            bad.append(name)
        else:
            features.append(column)
    if bad:
        raise error(
            f"non-numeric feature columns in {source}: {bad}. groveflow does not encode "
            "categories silently: encode them first, or list them in data.exclude"
        )
    return features


def _decompressed(name: str, data: bytes) -> bytes:
    if not name.lower().endswith(".gz"):
        return data
    import gzip

    try:
        return gzip.decompress(data)
    except OSError as error:
        raise InvalidDataset(f"{name} is not a readable gzip file: {error}") from None


def _csv_delimiter(name: str, spec: DataSpec) -> str:
    return "\t" if name.lower().removesuffix(".gz").endswith(".tsv") else spec.delimiter


def _numeric_array(values: np.ndarray) -> np.ndarray | None:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    return None


def _target_array(raw: list[str] | np.ndarray) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind == "O":
            return np.array(["" if v is None else str(v) for v in raw])
        return raw
    numeric = _numeric_column(raw)
    if numeric is None:
        return np.array(
            [math.nan if v.lower() in MISSING_MARKERS else v for v in raw], dtype=object
        )
    return numeric


def _read_npy(data: bytes, spec: DataSpec, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        array = storage.read_npy(data)
    except (ValueError, OSError) as error:
        raise InvalidDataset(f"{source} is not a readable .npy file: {error}") from None
    if array.ndim != 2 or array.shape[1] < 2:
        raise InvalidDataset(
            f"{source} must hold a 2-D array with a target column, got {array.shape}"
        )
    try:
        target = int(spec.target) if spec.target is not None else array.shape[1] - 1
    except ValueError:
        raise InvalidDataset(
            f"data.target for a .npy file is a column index, got {spec.target!r}"
        ) from None
    if not -array.shape[1] <= target < array.shape[1]:
        raise InvalidDataset(
            f"data.target={target} is outside the {array.shape[1]} columns of {source}"
        )
    target %= array.shape[1]
    X = np.delete(array, target, axis=1)
    return X, array[:, target], [f"x{i}" for i in range(X.shape[1])]


def _read_npz(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if "X" not in archive or "y" not in archive:
            raise InvalidDataset(f"{source} must hold arrays 'X' and 'y'; it has {list(archive)}")
        X, y = archive["X"], archive["y"]
        names = [str(n) for n in archive["feature_names"]] if "feature_names" in archive else None
    except (ValueError, OSError, EOFError) as error:
        raise InvalidDataset(f"{source} is not a readable .npz file: {error}") from None
    if X.ndim != 2:
        raise InvalidDataset(f"{source}: X must be 2-D, got shape {X.shape}")
    return X, y, names or [f"x{i}" for i in range(X.shape[1])]


def _table_columns(fmt: str, data: bytes, source: str, spec: DataSpec) -> dict[str, Any]:
    """The named columns of a CSV or converted (``.gfcols``) file."""
    if fmt == "csv":
        return _csv_columns(data, _csv_delimiter(source, spec), source)
    if fmt == CONVERTED_FORMAT:
        return read_columns(data, source)
    raise InvalidDataset(
        f"{source} is Parquet: name it with data.format='parquet' (or a .parquet URI) so the run "
        "converts it first (pyarrow runs in a function of its own)"
    )


def _read_one(name: str, data: bytes, spec: DataSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    fmt = _format_of(name, spec)
    data = _decompressed(name, data)
    if fmt == "csv":
        return _table_from_columns(_csv_columns(data, _csv_delimiter(name, spec), name), spec, name)
    if fmt == "npy":
        return _read_npy(data, spec, name)
    if fmt == "npz":
        return _read_npz(data, name)
    return _table_from_columns(_table_columns(fmt, data, name, spec), spec, name)


def _sources(uri: str) -> list[str]:
    """The files a URI names: one file, or every data file under a prefix/directory."""
    if uri.startswith("s3://"):
        bucket, key = storage.parse_s3_uri(uri)
        if key and not key.endswith("/"):
            return [uri]
        keys = [k for k in storage.list_keys(bucket, key) if _looks_like_data(k)]
        if not keys:
            raise DatasetNotFound(f"no data files (.csv, .parquet, .npy, .npz) under {uri}")
        return [f"s3://{bucket}/{k}" for k in keys]
    path = Path(uri).expanduser()
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and _looks_like_data(p.name))
        if not files:
            raise DatasetNotFound(f"no data files (.csv, .parquet, .npy, .npz) in directory {uri}")
        return files
    return [uri]


def _looks_like_data(name: str) -> bool:
    lowered = name.lower().removesuffix(".gz")
    base = lowered.rsplit("/", 1)[-1]
    return not base.startswith(("_", ".")) and any(lowered.endswith(s) for s in DATA_SUFFIXES)


def load_dataset(spec: DataSpec, task: str) -> Dataset:
    """Read and validate the dataset ``spec`` names.

    Raises
    ------
    DatasetNotFound
        If the URI names nothing.
    InvalidDataset
        If the data cannot be trained on (empty, non-numeric features, infinite
        values, missing targets, a single class, ...), naming the problem.
    """
    if spec.uri.startswith("sklearn:"):
        X, y, names = _bundled(spec.uri.removeprefix("sklearn:"))
    else:
        parts = [_read_one(src, storage.read_uri(src), spec) for src in _sources(spec.uri)]
        names = parts[0][2]
        for src, part in zip(_sources(spec.uri), parts, strict=True):
            if part[2] != names:
                raise InvalidDataset(f"{src} has columns {part[2]}; the first file has {names}")
        X = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return Dataset(X=to_features(X, names), y=_labels(y, task), feature_names=names)


def to_features(X: np.ndarray, names: list[str]) -> np.ndarray:
    """Validate features and convert them to the float32, C-order form every tree reads."""
    if X.ndim != 2 or X.shape[0] == 0:
        raise InvalidDataset(f"the dataset has no rows (shape {X.shape})")
    if X.dtype.kind not in "biuf":
        raise InvalidDataset(f"features must be numeric, got dtype {X.dtype}")
    with np.errstate(over="ignore"):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
    infinite = np.isinf(X32).any(axis=0)
    if infinite.any():
        bad = [names[i] for i in np.flatnonzero(infinite)[:10]]
        raise InvalidDataset(
            f"infinite values (or values beyond float32's range) in feature columns {bad}; "
            "replace them or mark them missing (NaN is accepted)"
        )
    return X32


def _labels(y: np.ndarray, task: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise InvalidDataset(f"the target must be one column, got shape {y.shape}")
    missing = _missing_mask(y)
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise InvalidDataset(f"{int(missing.sum())} rows have no target value (rows {rows}...)")
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise InvalidDataset("a regression target must be numeric; the target column has text")
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise InvalidDataset("the regression target has infinite values")
        return y
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise InvalidDataset(
                "classification labels are fractional numbers; "
                "did you mean model.task='regression'?"
            )
        y = y.astype(np.int64)
    elif y.dtype.kind in "OSU":
        y = y.astype(str)
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    if np.unique(y).size < 2:
        raise InvalidDataset(f"the target has a single class ({y[0]!r}): nothing to classify")
    return y


def _missing_mask(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and math.isnan(v)) for v in y], dtype=bool
        )
    if y.dtype.kind in "US":
        return np.char.strip(y.astype(str)) == ""
    return np.zeros(y.shape, dtype=bool)


def sources(uri: str) -> list[str]:
    """The files a dataset URI names, in the stable order they are read and scored."""
    return _sources(uri)


def read_scoring_file(
    source: str, spec: DataSpec, feature_names: list[str], id_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one file to score: its features in the model's order, and its id column if any.

    The file's columns (less ``id_column`` and ``spec.exclude``) must be exactly the
    model's feature names in the model's order: groveflow never guesses a mapping.

    Raises
    ------
    InvalidPredictRequest
        Naming missing, extra, reordered or non-numeric columns.
    """
    from groveflow.errors import InvalidPredictRequest

    if source.startswith("sklearn:"):
        X, _, names = _bundled(source.removeprefix("sklearn:"))
        _check_scoring_columns(names, feature_names, source)
        return to_features(X, feature_names), None
    fmt = _format_of(source, spec)
    data = _decompressed(source, storage.read_uri(source))
    if fmt in {"npy", "npz"}:
        return _scoring_matrix(source, fmt, data, feature_names), None
    columns = _table_columns(fmt, data, source, spec)
    ids = _id_values(columns, id_column, source)
    present = [c for c in columns if c != id_column and c not in spec.exclude]
    _check_scoring_columns(present, feature_names, source)
    features = _numeric_features(columns, feature_names, source, InvalidPredictRequest)
    if len(features[0]) == 0:
        raise InvalidPredictRequest(f"{source} has no rows to score")
    return to_features(np.column_stack(features), feature_names), ids


def _scoring_matrix(source: str, fmt: str, data: bytes, feature_names: list[str]) -> np.ndarray:
    from groveflow.errors import InvalidPredictRequest

    try:
        matrix = (
            storage.read_npy(data)
            if fmt == "npy"
            else np.load(io.BytesIO(data), allow_pickle=False)["X"]
        )
    except (ValueError, OSError, KeyError) as error:
        raise InvalidPredictRequest(f"{source} is not a readable .{fmt} file: {error}") from None
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names) or matrix.shape[0] == 0:
        raise InvalidPredictRequest(
            f"{source} has shape {matrix.shape}; "
            f"the model needs rows of {len(feature_names)} columns"
        )
    return to_features(matrix, feature_names)


def _id_values(columns: dict[str, Any], id_column: str | None, source: str) -> np.ndarray | None:
    from groveflow.errors import InvalidPredictRequest

    if id_column is None:
        return None
    if id_column not in columns:
        raise InvalidPredictRequest(f"id column {id_column!r} is not in {source}")
    return np.asarray([str(v) for v in columns[id_column]])


def _check_scoring_columns(present: list[str], feature_names: list[str], source: str) -> None:
    from groveflow.errors import InvalidPredictRequest

    if present == feature_names:
        return
    missing = [c for c in feature_names if c not in present]
    extra = [c for c in present if c not in feature_names]
    if missing or extra:
        raise InvalidPredictRequest(
            f"{source} does not match the model's features: missing {missing}, extra {extra} "
            "(list extra columns in data.exclude, or name an id column in data.id_column)"
        )
    raise InvalidPredictRequest(
        f"{source} has the model's columns in another order: {present}; "
        f"the model expects {feature_names}"
    )


DATASETS_PREFIX = "datasets/"


def check_readable(
    uri: str, buckets: tuple[str, ...], local_paths: bool, error: type[Exception] = InvalidRequest
) -> None:
    """Refuse, before reading anything, a dataset the stack may not read.

    ``buckets[0]`` is the stack's own bucket, where datasets live under ``datasets/``
    (the functions' IAM policies grant no other key there); the others are read whole.
    """
    if uri.startswith("sklearn:"):
        return
    if uri.startswith("s3://"):
        data_bucket, key = storage.parse_s3_uri(uri)
        if data_bucket == buckets[0] and not key.startswith(DATASETS_PREFIX):
            raise error(
                f"data.uri {uri} is in the stack's bucket but not under {DATASETS_PREFIX}; "
                f"upload datasets to s3://{data_bucket}/{DATASETS_PREFIX}"
            )
        if data_bucket not in buckets:
            raise error(
                f"data.uri {uri} is in bucket {data_bucket!r}, which this stack may not read; "
                f"readable buckets: {sorted(buckets)} (add it to the DataBucketNames parameter)"
            )
        return
    if "://" in uri:
        raise error(f"data.uri {uri!r} is not supported: use s3://, a local path or sklearn:NAME")
    if not local_paths:
        raise error(
            f"data.uri {uri!r} is a local path, readable only on the local engine; upload it to S3"
        )


def write_columns(names: list[str], columns: list[np.ndarray]) -> bytes:
    """An ``.npz`` of named columns (numbers or unicode strings), loadable without pickle."""
    buffer = io.BytesIO()
    arrays = {f"c{i}": column for i, column in enumerate(columns)}
    np.savez(buffer, allow_pickle=False, __columns__=np.array(names, dtype=str), **arrays)
    return buffer.getvalue()


def read_columns(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The named columns of a ``.gfcols`` file, in file order."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        names = [str(name) for name in archive["__columns__"]]
        return {name: archive[f"c{i}"] for i, name in enumerate(names)}
    except (ValueError, OSError, KeyError) as error:
        raise InvalidDataset(f"{source} is not a readable converted table: {error}") from None

"""Reading a training dataset into float32 features and user labels.

Sources: ``sklearn:NAME`` (bundled demo data), local paths, ``s3://bucket/key``
and ``s3://bucket/prefix/`` (every data file under the prefix, in key order).
Formats read here: ``.npy`` (a 2-D array; the target is a column index), ``.npz``
(arrays ``X`` and ``y``, optional ``feature_names``) and the columnar ``.gfcols``
files the run's Ingest step writes from CSV and Parquet (:mod:`groveflow.ingest`:
pyarrow does not fit in a function beside scikit-learn).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groveflow import storage
from groveflow.encoding import MISSING_TEXT, Encoding
from groveflow.encoding import fit as fit_encoding
from groveflow.errors import DatasetNotFound, InvalidDataset, InvalidPredictRequest, InvalidRequest
from groveflow.request import CONVERTED_FORMAT, DataSpec

__all__ = [
    "BUNDLED",
    "COLUMNS_SUFFIX",
    "CONVERTED_FORMAT",
    "INGESTED_FORMATS",
    "MISSING_MARKERS",
    "ColumnFiles",
    "Dataset",
    "check_classes",
    "check_readable",
    "check_weights",
    "column_files",
    "format_of",
    "load_dataset",
    "mark_source",
    "part_source",
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
MISSING_MARKERS = MISSING_TEXT
"""Cell values read as missing (in any letter case): by the Ingest step's CSV reader, and in
text read from any format, in features (:mod:`groveflow.encoding`) and targets alike."""
COLUMNS_SUFFIX = ".gfcols"
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
        User labels (int64, boolean or unicode strings) or float64 regression targets.
    feature_names : list of str
        The forest's features (a one-hot column's categories expanded: ``color=red``).
    encoding : Encoding or None, default=None
        How the table's raw columns became ``X``, when ``data.categorical`` is set.
    weight : ndarray of shape (n_rows,), dtype float64, or None, default=None
        Each row's sample weight (``data.weight``), checked by :func:`check_weights`;
        None when the request names no weight column.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    encoding: Encoding | None = None
    weight: np.ndarray | None = None


def format_of(name: str, spec: DataSpec) -> str:
    """A file's format: ``spec.format`` if given, else its extension's (``.gz`` aside)."""
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


def _numeric_column(values: list[str]) -> np.ndarray | None:
    """Floats with NaN for missing markers, or None if any value is not a number."""
    out = np.empty(len(values), dtype=np.float64)
    for i, text in enumerate(values):
        if text.strip().lower() in MISSING_MARKERS:
            out[i] = math.nan
        elif _is_number(text):
            out[i] = float(text)
        else:
            return None
    return out


def _table_from_columns(
    columns: Mapping[str, list[str]] | Mapping[str, np.ndarray], spec: DataSpec, source: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = _feature_columns(columns, spec, source)
    assert spec.target is not None  # _feature_columns refuses a table without one
    features = _numeric_features(columns, names, source, InvalidDataset)
    return features, _target_array(columns[spec.target]), names


def _feature_columns(columns: Mapping[str, Any], spec: DataSpec, source: str) -> list[str]:
    """The feature columns ``spec`` chooses from a table's, checked against them."""
    source = _where(columns, source)
    _check_named_columns(columns, spec, source)
    names = (
        list(spec.features)
        if spec.features is not None
        else [c for c in columns if c not in (spec.target, spec.weight) and c not in spec.exclude]
    )
    if not names:
        raise InvalidDataset(f"{source} has no feature columns besides the target {spec.target!r}")
    return names


def _check_named_columns(columns: Mapping[str, Any], spec: DataSpec, source: str) -> None:
    """Refuse a target, feature, excluded or weight column the table does not have."""
    if spec.target is None:
        raise InvalidDataset(f"data.target is required for {source}: name the column to learn")
    if spec.target not in columns:
        raise InvalidDataset(
            f"target column {spec.target!r} is not in {source}; columns are: {list(columns)}"
        )
    unknown = [c for c in (spec.features or ()) + spec.exclude if c not in columns]
    if unknown:
        raise InvalidDataset(f"columns {unknown} are not in {source}; columns are: {list(columns)}")
    if spec.weight is not None and spec.weight not in columns:
        raise InvalidDataset(
            f"weight column {spec.weight!r} (data.weight) is not in {source}; "
            f"columns are: {list(columns)}"
        )


def _encoded_dataset(
    columns: Mapping[str, Any],
    spec: DataSpec,
    task: str,
    learn_rows: Callable[[np.ndarray], np.ndarray] | None,
) -> Dataset:
    """A table's features through the encoding learned from its training rows."""
    names = _feature_columns(columns, spec, spec.uri)
    assert spec.categorical is not None and spec.target is not None
    y = _labels(_target_array(columns[spec.target]), task)
    rows = None if learn_rows is None else learn_rows(y)
    source = _where(columns, spec.uri)
    encoding = fit_encoding(columns, names, rows, spec.categorical, source)
    _refuse_repeated_features(encoding, source)
    X = to_features(encoding.transform(columns, source), encoding.feature_names)
    weight = _weight_column(columns, spec, source)
    return Dataset(X=X, y=y, feature_names=encoding.feature_names, encoding=encoding, weight=weight)


def _weight_column(columns: Mapping[str, Any], spec: DataSpec, source: str) -> np.ndarray | None:
    """The ``data.weight`` column of a table as float64 weights (text that reads as numbers is
    numbers; missing markers are missing), checked by :func:`check_weights`."""
    if spec.weight is None:
        return None
    column = columns[spec.weight]
    what = f"the weight column {spec.weight!r} (data.weight) of {_where(columns, source)}"
    if isinstance(column, list) or column.dtype.kind in "UO":
        column = _numeric_column(["" if v is None else str(v) for v in column])
        if column is None:
            raise InvalidDataset(f"{what} holds text; a weight must be a number")
    return check_weights(column, what, InvalidDataset)


def check_weights(weight: Any, what: str, error: type[Exception] = InvalidDataset) -> np.ndarray:
    """Sample weights as float64, refused by name unless every one is a finite number, none is
    negative and not all are zero: the rule for ``data.weight`` and for the estimators'
    ``fit(sample_weight=...)`` alike, checked before any grove is fitted.

    Parameters
    ----------
    weight : array-like of shape (n_rows,)
    what : str
        The weights' name in messages (``"the weight column 'w' of data.csv"``).
    error : type of Exception, default=InvalidDataset
        What a refusal raises.
    """
    array = np.asarray(weight)
    if array.ndim != 1:
        raise error(f"{what} must be one value per row, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise error(f"{what} must hold numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    for bad, how in ((np.isnan(values), "missing (NaN)"), (np.isinf(values), "infinite")):
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise error(f"{what}: {int(bad.sum())} weights are {how} (rows {rows}...)")
    negative = values < 0
    if negative.any():
        rows = np.flatnonzero(negative)[:5].tolist()
        raise error(
            f"{what}: {int(negative.sum())} weights are negative (rows {rows}..., the first "
            f"{values[rows[0]]:g}); a weight must be 0 or more"
        )
    if len(values) and not values.any():
        raise error(f"{what}: every weight is 0, so no row would count; give some rows weight")
    return values


def _chosen_matrix_features(
    X: np.ndarray, names: list[str], spec: DataSpec, source: str
) -> tuple[np.ndarray, list[str]]:
    """A matrix's columns that ``data.features`` and ``data.exclude`` choose, by feature name.

    A matrix's features are named as the forest names them (``x0``, ``x1``, ... after the
    target column of a ``.npy``; an ``.npz`` file's ``feature_names``; a bundled dataset's
    own names), so the two keys select from a matrix as they do from a table's columns.
    """
    if spec.features is None and not spec.exclude:
        return X, names
    unknown = [c for c in (spec.features or ()) + spec.exclude if c not in names]
    if unknown:
        raise InvalidDataset(
            f"data.features/data.exclude name {unknown}, which are not features of {source}; "
            f"its features are named {_shown(names)}"
        )
    chosen = (
        list(spec.features)
        if spec.features is not None
        else [c for c in names if c not in spec.exclude]
    )
    if not chosen:
        raise InvalidDataset(f"data.exclude drops every feature of {source}")
    positions = [names.index(c) for c in chosen]
    return X[:, positions], chosen


def _shown(names: list[str], limit: int = 20) -> str:
    """Column names for a message: all of them, or the first ``limit`` and a count."""
    if len(names) <= limit:
        return str(names)
    return f"{names[:limit]} and {len(names) - limit} more"


def _refuse_repeated_features(encoding: Encoding, source: str) -> None:
    """Refuse an encoding two of whose features share a name (a one-hot ``color=red`` beside a
    column named ``color=red``): a forest's features, importances and a Pipeline's output
    columns are told apart by name."""
    makers: dict[str, list[str]] = {}
    for column in encoding.columns:
        for name in column.feature_names:
            makers.setdefault(name, []).append(column.name)
    repeated = {name: columns for name, columns in makers.items() if len(columns) > 1}
    if repeated:
        name, columns = next(iter(repeated.items()))
        raise InvalidDataset(
            f"the feature name {name!r} is given by more than one column of {source} "
            f"({columns}: a one-hot column names its features column=category): rename "
            f"the column {name!r}, or list one of them in data.exclude"
        )


def _refuse_categorical(spec: DataSpec, source: str, error: type[Exception]) -> None:
    """``data.categorical`` names columns of a table (CSV, Parquet), not of a matrix."""
    if spec.categorical is not None:
        raise error(
            f"data.categorical encodes the named columns of a CSV or Parquet table; {source} "
            "is a numeric matrix: remove data.categorical"
        )


def _numeric_features(
    columns: Mapping[str, Any], names: list[str], source: str, error: type[Exception]
) -> np.ndarray:
    """The named columns as one float32 matrix (NaN for missing values); text is refused.

    The matrix is allocated once and filled a column at a time (a lazily read
    :class:`ColumnFiles` loads one column at a time), so reading costs the float32
    matrix plus one column, not a float64 copy of every column and then their stack.
    """
    source = _where(columns, source)
    matrix: np.ndarray | None = None
    bad = []
    for j, name in enumerate(names):
        column = columns[name]
        if isinstance(column, list) or column.dtype.kind == "U":
            # Numbers read as text (an id column; a Parquet string column) are numbers.
            column = _numeric_column(list(column))
        elif column.dtype.kind not in "biuf":
            column = None
        if column is None:
            bad.append(name)
            continue
        if matrix is None:
            matrix = np.empty((len(column), len(names)), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by to_features
            matrix[:, j] = column
        del column
    if bad and error is InvalidDataset:  # training: the request can encode them
        raise error(
            f"non-numeric feature columns in {source}: {bad}. groveflow does not encode "
            "categories silently: set data.categorical to 'auto' (or list them in it) to "
            "encode them, or list them in data.exclude"
        )
    if bad:  # scoring: the model reads numbers there
        raise error(
            f"non-numeric values in feature columns {bad} of {source}: the model reads "
            "numbers there (missing values may be empty or NA)"
        )
    assert matrix is not None  # names is not empty
    return matrix


def _decompressed(name: str, data: bytes) -> bytes:
    if not name.lower().endswith(".gz"):
        return data
    import gzip

    try:
        return gzip.decompress(data)
    except OSError as error:
        raise InvalidDataset(f"{name} is not a readable gzip file: {error}") from None


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


def _read_npz(
    data: bytes, source: str, weight: str | None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    """An ``.npz`` file's ``X``, ``y``, feature names and, when ``weight`` names one of its
    arrays (``data.weight``), that array of row weights, unchecked (:func:`check_weights`)."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if "X" not in archive or "y" not in archive:
            raise InvalidDataset(f"{source} must hold arrays 'X' and 'y'; it has {list(archive)}")
        if weight is not None and weight not in archive:
            raise InvalidDataset(
                f"data.weight={weight!r} is not an array of {source}; it has {list(archive)}"
            )
        X, y = archive["X"], archive["y"]
        w = None if weight is None else archive[weight]
        given = archive.get("feature_names")
    except (ValueError, OSError, EOFError) as error:
        raise InvalidDataset(f"{source} is not a readable .npz file: {error}") from None
    if X.ndim != 2:
        raise InvalidDataset(f"{source}: X must be 2-D, got shape {X.shape}")
    if w is not None and w.shape != (len(X),):
        raise InvalidDataset(
            f"the weight array {weight!r} (data.weight) of {source} must hold one weight per "
            f"row of X ({len(X)}), got shape {w.shape}"
        )
    names = _column_names(given, X.shape[1], source, InvalidDataset)
    return X, y, names if names is not None else [f"x{i}" for i in range(X.shape[1])], w


def _column_names(
    given: np.ndarray | None, n_columns: int, source: str, error: type[Exception]
) -> list[str] | None:
    """An ``.npz`` file's ``feature_names``, checked to name each of its ``n_columns``
    columns of ``X`` once, or None if it has none.

    These names are a forest's feature names, and a file to score is matched to them by
    name; names that do not fit the columns would mislabel them, so they are refused.
    """
    if given is None:
        return None
    if given.ndim != 1:
        raise error(
            f"the feature_names of {source} must be a list of names, one per column of X; "
            f"got an array of shape {given.shape}"
        )
    names = [str(n) for n in given]
    if len(names) != n_columns:
        raise error(
            f"{source} has {len(names)} feature_names {_shown(names)} for the {n_columns} "
            "columns of its X: give one name per column, in X's order (or no feature_names)"
        )
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise error(
            f"the feature_names of {source} name more than one column of X {repeated}: "
            "give each column a name of its own"
        )
    return names


INGESTED_FORMATS = {"csv", "parquet"}
"""Formats the Ingest step reads (pyarrow), writing ``.gfcols`` files for the other functions."""


def _refuse_uningested(fmt: str, source: str, error: type[Exception] = InvalidDataset) -> None:
    """A CSV or Parquet file reaches a scikit-learn function only through the Ingest step."""
    if fmt in INGESTED_FORMATS:
        raise error(
            f"{source} is {fmt.upper()}: the run's Ingest step reads it and writes the columnar "
            f"{COLUMNS_SUFFIX} files this function reads (pyarrow runs in a function of its own); "
            "start a state machine execution rather than invoking this function directly"
        )


def _read_one(
    name: str, data: bytes, spec: DataSpec
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    fmt = format_of(name, spec)
    data = _decompressed(name, data)
    if fmt == "npy":
        _refuse_weight(spec, name)
        return (*_read_npy(data, spec, name), None)
    return _read_npz(data, name, spec.weight)


def _refuse_weight(spec: DataSpec, source: str) -> None:
    """``data.weight`` names a table's column or an ``.npz`` array; a bare matrix has neither."""
    if spec.weight is not None:
        raise InvalidDataset(
            f"data.weight={spec.weight!r} names a column of a CSV or Parquet table or an array "
            f"of an .npz file; {source} has no named columns: give the data as CSV, Parquet "
            "or .npz with a weight array, or remove data.weight"
        )


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


def load_dataset(
    spec: DataSpec, task: str, learn_rows: Callable[[np.ndarray], np.ndarray] | None = None
) -> Dataset:
    """Read and validate the dataset ``spec`` names.

    ``learn_rows``, given the labels, chooses the rows (the training split) that
    ``spec.categorical``'s encoding is learned from; all rows if None.

    Raises
    ------
    DatasetNotFound
        If the URI names nothing.
    InvalidDataset
        If the data cannot be trained on (empty, non-numeric features, infinite
        values, missing targets, a single class, ...), naming the problem.
    """
    if spec.uri.startswith("sklearn:"):
        _refuse_categorical(spec, spec.uri, InvalidDataset)
        _refuse_weight(spec, spec.uri)
        X, y, names = _bundled(spec.uri.removeprefix("sklearn:"))
        X, names = _chosen_matrix_features(X, names, spec, spec.uri)
        return Dataset(X=to_features(X, names), y=_labels(y, task), feature_names=names)
    files = _sources(spec.uri)
    formats = [format_of(src, spec) for src in files]
    for src, fmt in zip(files, formats, strict=True):
        _refuse_uningested(fmt, src)
    if formats[0] == CONVERTED_FORMAT:
        with column_files(files) as columns:
            if spec.categorical is not None:
                return _encoded_dataset(columns, spec, task, learn_rows)
            X, y, names = _table_from_columns(columns, spec, spec.uri)
            weight = _weight_column(columns, spec, spec.uri)
    else:
        _refuse_categorical(spec, spec.uri, InvalidDataset)
        parts = [_read_one(src, storage.read_uri(src), spec) for src in files]
        names = parts[0][2]
        for src, part in zip(files, parts, strict=True):
            if part[2] != names:
                raise InvalidDataset(f"{src} has columns {part[2]}; the first file has {names}")
        X = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        X, names = _chosen_matrix_features(X, names, spec, spec.uri)
        weight = None
        if spec.weight is not None:
            raw = np.concatenate([p[3] for p in parts if p[3] is not None])
            what = f"the weight array {spec.weight!r} (data.weight) of {spec.uri}"
            weight = check_weights(raw, what, InvalidDataset)
    X = to_features(X, names)
    return Dataset(X=X, y=_labels(y, task), feature_names=names, weight=weight)


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
    y = label_values(y, task)
    if task == "classification":
        classes = np.unique(y)
        if classes.size < 2:
            raise InvalidDataset(
                f"the target has a single class ({classes.tolist()[0]!r}): nothing to classify"
            )
        check_classes(classes, len(y))
    return y


FEW_CLASSES = 20
"""Numeric classes up to this many are never taken for a quantity (small tables)."""


def check_classes(classes: np.ndarray, n_rows: int) -> None:
    """Refuse numbers as classes when most classes would have a single row: more classes than
    half the rows (and than :data:`FEW_CLASSES`), and not the codes ``0..k-1`` or ``1..k``.

    Such a target is a quantity (a price, a count) left to ``model.task``'s default,
    ``"classification"``, which a classifier cannot learn. Class codes (what
    ``LabelEncoder``, or the estimators, give) are taken as meant.
    """
    if classes.dtype.kind not in "iuf" or classes.size <= max(n_rows / 2, FEW_CLASSES):
        return
    codes = np.arange(classes.size)
    if np.array_equal(classes, codes) or np.array_equal(classes, codes + 1):
        return
    raise InvalidDataset(
        f"the target has {classes.size:,} distinct numbers in {n_rows:,} rows, so most "
        "classes have a single row to learn from: it looks like a quantity to predict; "
        "set model.task to 'regression' (to classify, give the classes as codes 0..k-1 or as "
        "text)"
    )


def label_values(y: np.ndarray, task: str) -> np.ndarray:
    """The target column as the labels a forest trains on (int64, boolean or unicode classes,
    float64 regression targets), refusing missing, fractional or infinite ones by name.

    Text labels lose surrounding whitespace, as text features do; booleans stay booleans
    (classes ``False`` and ``True``, as scikit-learn's ``classes_`` holds them). Row-wise, so
    a part of a table converts alike; that there are two classes is the caller's check."""
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
        y = np.char.strip(y.astype(str))  # as features are: " cat" is the class "cat"
    return y  # booleans stay booleans: classes False and True, as scikit-learn's


def _missing_mask(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and math.isnan(v)) for v in y], dtype=bool
        )
    if y.dtype.kind in "US":
        # The missing markers, as a CSV reader and the encoding read them: a Parquet or
        # ``.npz`` text target holding "NA" or "None" misses those values as a CSV does.
        marked = np.char.lower(np.char.strip(y.astype(str)))
        return np.isin(marked, sorted(MISSING_MARKERS))
    return np.zeros(y.shape, dtype=bool)


def sources(uri: str) -> list[str]:
    """The files a dataset URI names, in the stable order they are read and scored."""
    return _sources(uri)


def read_scoring_file(
    source: str,
    spec: DataSpec,
    feature_names: list[str],
    id_column: str | None = None,
    encoding: Encoding | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one file to score: its features in the model's order, and its id column if any.

    The file's columns (less ``id_column`` and ``spec.exclude``) must be exactly the
    model's feature names in the model's order: groveflow never guesses a mapping. An
    ``.npz`` file's ``feature_names`` name its columns as a header does; only a ``.npy``
    file or an ``.npz`` file without them is read by position. A model with an
    ``encoding`` reads its raw input columns (``encoding.input_names``), encoded as in
    training: a batch may lack categories or hold new ones.

    Raises
    ------
    InvalidPredictRequest
        Naming missing, extra, reordered or non-numeric columns.
    """
    if source.startswith("sklearn:"):
        X, _, names = _bundled(source.removeprefix("sklearn:"))
        present = _kept(names, spec.exclude, source)
        _check_scoring_columns(present, feature_names, source)
        return to_features(X[:, [names.index(c) for c in present]], feature_names), None
    fmt = format_of(source, spec)
    _refuse_uningested(fmt, source, InvalidPredictRequest)
    if encoding is not None and fmt != CONVERTED_FORMAT:
        raise InvalidPredictRequest(
            f"the model reads the named columns {encoding.input_names} (it was trained with "
            f"data.categorical); {source} is a numeric matrix: give a CSV or Parquet table"
        )
    if fmt in {"npy", "npz"}:
        data = _decompressed(source, storage.read_uri(source))
        return _scoring_matrix(source, fmt, data, feature_names, spec.exclude), None
    with column_files([source]) as columns:
        source = columns.source_name(source)
        ids = _id_values(columns, id_column, source)
        inputs = encoding.input_names if encoding is not None else feature_names
        # An id column the model also reads as a feature is both.
        present = [c for c in columns if (c != id_column or c in inputs) and c not in spec.exclude]
        _check_scoring_columns(present, inputs, source)
        if encoding is not None:
            features = encoding.transform(columns, source, InvalidPredictRequest)
        else:
            features = _numeric_features(columns, feature_names, source, InvalidPredictRequest)
        if len(features) == 0:
            # A header-only file of a prefix adds no rows (as in training); named alone, it
            # is refused.
            if columns.named_directly:
                raise InvalidPredictRequest(f"{source} has no rows to score")
            return np.empty((0, len(feature_names)), dtype=np.float32), ids
    return to_features(features, feature_names), ids


def _scoring_matrix(
    source: str, fmt: str, data: bytes, feature_names: list[str], exclude: tuple[str, ...]
) -> np.ndarray:
    """A matrix to score, less ``exclude``, in the model's order.

    An ``.npz`` file's ``feature_names`` name its columns, which must then be the model's
    features in the model's order, as a CSV's header must (:func:`_check_scoring_columns`).
    A ``.npy`` file, or an ``.npz`` file without names, is read by position: its columns are
    named ``x0``, ``x1``, ... for ``exclude``, as in training (:func:`_chosen_matrix_features`).
    """
    given = None
    try:
        if fmt == "npy":
            matrix = storage.read_npy(data)
        else:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
            matrix = archive["X"]
            given = archive.get("feature_names")
    except (ValueError, OSError, KeyError) as error:
        raise InvalidPredictRequest(f"{source} is not a readable .{fmt} file: {error}") from None
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise InvalidPredictRequest(
            f"{source} has shape {matrix.shape}; "
            f"the model needs rows of {len(feature_names)} columns"
        )
    names = _column_names(given, matrix.shape[1], source, InvalidPredictRequest)
    if names is not None:
        present = _kept(names, exclude, source)
        _check_scoring_columns(present, feature_names, source)
    else:
        names = [f"x{i}" for i in range(matrix.shape[1])]
        present = _kept(names, exclude, source)
        if len(present) != len(feature_names):
            kept = " (less data.exclude)" if exclude else ""
            raise InvalidPredictRequest(
                f"{source} has {len(present)} columns{kept}; the model needs "
                f"{len(feature_names)}, {_shown(feature_names)}. Its columns are read by "
                "position, as it names none (a .npy file, or an .npz file without "
                "feature_names): give the model's columns in its order, or an .npz file "
                "whose feature_names name them"
            )
    position = {name: i for i, name in enumerate(names)}
    return to_features(matrix[:, [position[c] for c in present]], feature_names)


def _kept(names: list[str], exclude: tuple[str, ...], source: str) -> list[str]:
    """A matrix's feature names less ``data.exclude``, whose every name it must have."""
    unknown = [c for c in exclude if c not in names]
    if unknown:
        raise InvalidPredictRequest(
            f"data.exclude names {unknown}, which are not columns of {source}; "
            f"its columns are named {_shown(names)}"
        )
    return [c for c in names if c not in exclude]


def _id_values(columns: Mapping[str, Any], id_column: str | None, source: str) -> np.ndarray | None:
    if id_column is None:
        return None
    if id_column not in columns:
        raise InvalidPredictRequest(f"id column {id_column!r} is not in {source}")
    return np.asarray([str(v) for v in columns[id_column]])


def _check_scoring_columns(present: list[str], feature_names: list[str], source: str) -> None:
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


COLUMNS_KEY = "__columns__"
"""The member of a ``.gfcols`` file holding its column names; column ``i`` is member ``c{i}``."""
SOURCE_KEY = "__source__"
"""The member of an ingested ``.gfcols`` part holding the user's file it was read from and the
``data.uri`` that named it (a prefix, or the file itself): what messages name."""


def mark_source(path: str | Path, source: str, uri: str) -> None:
    """Record in a ``.gfcols`` part the user's file it holds rows of, and the ``data.uri``."""
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_STORED, allowZip64=True) as archive,
        archive.open(f"{SOURCE_KEY}.npy", "w", force_zip64=True) as handle,
    ):
        np.lib.format.write_array(handle, np.array([source, uri], dtype=str))


def write_columns(path: str | Path, names: list[str], columns: Iterable[np.ndarray]) -> None:
    """Write a ``.gfcols`` file: a zip of ``.npy`` members, loadable without pickle.

    ``columns`` (numbers, booleans or unicode strings, one per name, of equal length)
    is consumed one at a time and each is written as it comes, so a caller that
    produces them lazily holds one column in memory, never the file's bytes.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        members = [(COLUMNS_KEY, np.array(names, dtype=str))]
        for member, array in [*members, *((f"c{i}", c) for i, c in enumerate(columns))]:
            with archive.open(f"{member}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)


class ColumnFiles(Mapping[str, np.ndarray]):
    """The named columns of local ``.gfcols`` files (parts of one table, in row order).

    A column is read when it is looked up, from every part, and joined; nothing else
    is held, so a reader that takes one column at a time needs memory for one column.
    """

    def __init__(self, paths: list[Path], sources: list[str]) -> None:
        self._archives: list[Any] = []
        self._origins: list[tuple[str, str] | None] = []
        names: list[str] | None = None
        try:
            for path, source in zip(paths, sources, strict=True):
                archive = np.load(path, allow_pickle=False)
                self._archives.append(archive)
                origin = archive[SOURCE_KEY].tolist() if SOURCE_KEY in archive else None
                self._origins.append(None if origin is None else (origin[0], origin[1]))
                part_names = [str(name) for name in archive[COLUMNS_KEY]]
                if names is not None and part_names != names:
                    raise InvalidDataset(
                        f"{origin[0] if origin else source} has columns {part_names}; "
                        f"the first file has {names}"
                    )
                names = part_names
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
            self.close()
            raise InvalidDataset(f"{source} is not a readable converted table: {error}") from None
        except InvalidDataset:
            self.close()
            raise
        self._names = names or []
        self._sources = sources

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        member = f"c{self._names.index(name)}"
        try:
            parts = [archive[member] for archive in self._archives]
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
            raise InvalidDataset(
                f"{self._sources[0]} is not a readable converted table: {error}"
            ) from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def source_name(self, fallback: str) -> str:
        """What messages call these parts: the user's file they hold, or the ``data.uri``
        (a prefix) when they hold several; ``fallback`` for parts that record neither."""
        if not self._origins or any(origin is None for origin in self._origins):
            return fallback
        files = {origin[0] for origin in self._origins if origin is not None}
        first = self._origins[0]
        assert first is not None
        return files.pop() if len(files) == 1 else first[1]

    @property
    def named_directly(self) -> bool:
        """Whether the request named these parts' file itself (not a prefix holding it)."""
        return all(origin is None or origin[0] == origin[1] for origin in self._origins)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        """Close the files (the columns already read stay valid)."""
        for archive in self._archives:
            archive.close()


@contextlib.contextmanager
def column_files(sources: list[str]) -> Iterator[ColumnFiles]:
    """The columns of ``.gfcols`` files; those in S3 are first downloaded to a temporary directory.

    A download goes to disk (Lambda's ``/tmp``) rather than memory, so a reader holds
    the columns it takes, not the file's bytes as well.
    """
    with tempfile.TemporaryDirectory(prefix="groveflow-columns-") as scratch:
        paths = []
        for number, source in enumerate(sources):
            if source.startswith("s3://"):
                paths.append(Path(scratch) / f"part-{number:05d}{COLUMNS_SUFFIX}")
                storage.download(source, paths[-1])
            else:
                paths.append(Path(source).expanduser())
                if not paths[-1].is_file():
                    raise DatasetNotFound(f"no such file or object: {source}")
        columns = ColumnFiles(paths, sources)
        try:
            yield columns
        finally:
            columns.close()


def part_source(source: str) -> str:
    """The user's file an ingested ``.gfcols`` part holds rows of; ``source`` for any other."""
    if not source.lower().endswith(COLUMNS_SUFFIX):
        return source
    with column_files([source]) as columns:
        return columns.source_name(source)


def _where(columns: Mapping[str, Any], source: str) -> str:
    """What a message calls ``columns``: the user's file, not an ingested part."""
    return columns.source_name(source) if isinstance(columns, ColumnFiles) else source


def read_columns(path: str | Path, source: str) -> dict[str, np.ndarray]:
    """Every column of one local ``.gfcols`` file, in file order."""
    columns = ColumnFiles([Path(path)], [source])
    try:
        return dict(columns)
    finally:
        columns.close()

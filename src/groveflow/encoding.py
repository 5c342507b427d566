"""Categorical, text, boolean and date columns as the numbers a forest splits on.

A run whose ``data.categorical`` is set learns an :class:`Encoding` from its training
rows (:func:`fit`), stores it in the run record and the model manifest
(:meth:`Encoding.to_dict`), and applies it, identically, to every row it scores
(:meth:`Encoding.transform`). :meth:`Encoding.to_sklearn` gives the same encoding as a
scikit-learn ``ColumnTransformer`` of stock encoders, so ``Pipeline([encoder, forest])``
predicts from the raw columns exactly as groveflow does.

The rules, per input column (in the order of the data's columns):

- ``numeric``: numbers as they are, ``true``/``false`` (any case) as 1/0, missing as NaN.
- ``date``: ISO 8601 dates or date-times (``2024-01-31``, ``2024-01-31T12:30:00+02:00``)
  become days since 1970-01-01T00:00 UTC, a float (times as fractions of a day; a time
  without an offset is taken as UTC); missing as NaN. Any other value is refused by name.
- ``onehot``: one 0/1 feature per category seen in the training rows, sorted
  (``color=red``); a category not seen there (the test rows' or a scoring batch's) is all
  zeros, and a missing value is a category of its own (``color=(missing)``) if the
  training rows had one, else all zeros too, as ``OneHotEncoder(handle_unknown="ignore")``.
- ``ordinal``: the category's position among the sorted training categories; an unseen
  category and a missing value are NaN, which scikit-learn's trees route by their learned
  missing-value direction.

A value is missing when it is None, NaN, pandas' ``NA`` or ``NaT`` (a nullable dtype's
missing cell) or, as text, one of the CSV missing markers (``""``, ``NA``, ``NaN``,
``null``, ``N/A``, ``?``, ``-``, ``none``, in any case).
Categories are text with surrounding spaces removed; a number is one category however it is
written (``3``, ``"03"``, ``3.0`` and ``"3.0"`` are ``"3"``; ``"1.50"`` is ``"1.5"``), and so is
a boolean (``True`` and ``"TRUE"`` are ``"true"``), since a reader may give either form. A
scoring batch never needs every category: the encoding, not the batch, decides the features.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from groveflow.constraints import (
    Columns,
    Constraint,
    Interval,
    Options,
    Rule,
    check_section,
    check_value,
)
from groveflow.errors import ArtifactError, InvalidDataset, InvalidRequest

__all__ = [
    "AUTO",
    "DEFAULT_MAX_CATEGORIES",
    "ENCODING_VERSION",
    "MAX_ORDINAL_CATEGORIES",
    "CategoricalSpec",
    "ColumnEncoding",
    "Encoding",
    "fit",
    "parse_categorical",
    "stored_encoding",
    "to_categories",
    "to_categories_or_nan",
    "to_days",
    "to_numbers",
]

ENCODING_VERSION = 1
"""The stored encoding's layout, written as ``encoding_version``."""
AUTO = "auto"
ENCODINGS = ("onehot", "ordinal")
OVERRIDES = (*ENCODINGS, "date")
KINDS = ("numeric", "date", *ENCODINGS)
DEFAULT_MAX_CATEGORIES = 64
"""Distinct training values a one-hot column may have (each is a feature column)."""
MAX_ONEHOT_CATEGORIES = 10_000
MAX_ORDINAL_CATEGORIES = 100_000
"""Distinct training values an ordinal column may have (the manifest lists them all)."""
MISSING_TEXT = frozenset({"", "na", "nan", "n/a", "null", "none", "?", "-"})
MISSING_NAME = "(missing)"
"""How a one-hot feature of missing values is named (``color=(missing)``)."""
_MISSING = ""  # the one-hot category of missing values: no real category is empty
_TRUE, _FALSE = "true", "false"
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
)
_INTEGER = re.compile(r"[+-]?\d+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class CategoricalSpec:
    """Which feature columns to encode, and how (``data.categorical``).

    Parameters
    ----------
    columns : "auto" or tuple of str, default="auto"
        ``"auto"``: every feature column that is not numeric; or the columns to encode
        (a named column of numbers is encoded by its values' text, as codes are).
    encoding : {"onehot", "ordinal"}, default="onehot"
        How categorical columns are encoded.
    max_categories : int, default=64
        Most distinct training values a one-hot column may have; more is refused with
        the count (encode it as ordinal, raise this, or exclude the column).
    encodings : dict of str to str, default={}
        Per-column choices over ``encoding``: ``"onehot"``, ``"ordinal"`` or ``"date"``
        (dates are recognised by themselves; ``"onehot"`` keeps a date column categorical).
    """

    columns: str | tuple[str, ...] = AUTO
    encoding: str = "onehot"
    max_categories: int = DEFAULT_MAX_CATEGORIES
    encodings: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :func:`parse_categorical` accepts back."""
        return {
            "columns": self.columns if isinstance(self.columns, str) else list(self.columns),
            "encoding": self.encoding,
            "max_categories": self.max_categories,
            "encodings": dict(self.encodings),
        }

    def named(self) -> tuple[str, ...]:
        """Every column the spec names (to check against the data's columns)."""
        listed = () if isinstance(self.columns, str) else self.columns
        return (*listed, *(c for c in self.encodings if c not in listed))


CATEGORICAL: dict[str, Constraint | None] = {
    "columns": Columns(auto=True),
    "encoding": Options(ENCODINGS),
    "max_categories": Interval(int, 1, MAX_ONEHOT_CATEGORIES),
    "encodings": Rule(
        lambda v: isinstance(v, dict), "{name} must map column names to encodings, got {value!r}"
    ),
}
"""The ``data.categorical`` section (its object form): which text columns become numbers, how."""
CATEGORICAL_KEYS = set(CATEGORICAL)


def parse_categorical(
    value: Any, section: str = "data.categorical", error: type[Exception] = InvalidRequest
) -> CategoricalSpec | None:
    """Validate ``data.categorical``: ``"auto"``, a list of columns, or an object.

    The object form is ``{"columns": "auto" | [...], "encoding": "onehot" | "ordinal",
    "max_categories": int, "encodings": {column: "onehot" | "ordinal" | "date"}}``.
    """
    if value is None:
        return None
    if isinstance(value, str | list):
        value = {"columns": value}
    if not isinstance(value, dict):
        raise error(f"{section} must be 'auto', a list of column names or an object, got {value!r}")
    check_section(section, value, CATEGORICAL, prefix=f"{section}.", error=error)
    columns = value.get("columns", AUTO)
    columns = columns if columns == AUTO else tuple(columns)
    encodings = value.get("encodings", {})
    for column, chosen in encodings.items():
        check_value(f"{section}.encodings[{column!r}]", chosen, Options(OVERRIDES), error)
        if isinstance(columns, tuple) and column not in columns:
            raise error(
                f"{section}.encodings names {column!r}, which {section}.columns does not list"
            )
    encoding = value.get("encoding", "onehot")
    cap = value.get("max_categories", DEFAULT_MAX_CATEGORIES)
    return CategoricalSpec(columns, encoding, cap, dict(encodings))


# --------------------------------------------------------------------------- cell rules
# One function per rule, used by Encoding.transform and, in an exported Pipeline, by
# scikit-learn's FunctionTransformer: the two cannot disagree.


def _cells(values: Any) -> np.ndarray:
    """A column as a 1-D array: a list, an array, or a 2-D slice of one column."""
    array = np.asarray(values, dtype=object) if isinstance(values, list) else np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"a column must be 1-D (or one column wide), got shape {array.shape}")
    return array


def _per_value(array: np.ndarray, convert: Callable[[Any], Any], dtype: Any) -> np.ndarray:
    """``convert`` of every cell, computed once per distinct text (columns repeat themselves)."""
    if array.dtype.kind == "U":
        distinct, inverse = np.unique(array, return_inverse=True)
        converted = np.array([convert(v) for v in distinct.tolist()], dtype=dtype)
        return converted[inverse.reshape(-1)]
    return np.array([convert(v) for v in array.tolist()], dtype=dtype)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TEXT
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return _is_pandas_missing(value)


def _is_pandas_missing(value: Any) -> bool:
    """Whether ``value`` is pandas' ``NA`` or ``NaT`` (a nullable column's missing cell).

    pandas is not a dependency: where it is not imported, no cell can be one of these."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _shown(value: Any) -> str:
    """A cell as a message shows it: numpy scalars as the Python values they hold
    (``1``, not ``np.int64(1)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _number(value: Any) -> float:
    if _is_missing(value):
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in (_TRUE, _FALSE):
            return 1.0 if text.lower() == _TRUE else 0.0
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{_shown(value)} is not a number") from None
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return float(value)
    raise ValueError(f"{_shown(value)} is not a number")


def _day(value: Any) -> float:
    if _is_missing(value):
        return math.nan
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(
                f"{_shown(value)} is not an ISO 8601 date (YYYY-MM-DD[Thh:mm[:ss]][offset])"
            )
        try:
            value = datetime.fromisoformat(text)
        except ValueError as problem:
            raise ValueError(f"{_shown(value)} is not a valid date: {problem}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(f"{_shown(value)} is not a date")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float((value - _EPOCH) / _ONE_DAY)


def _category(value: Any) -> str:
    """A cell's category text; ``""`` when it is missing.

    A number or boolean has one text whether a reader gave it as text or as a value (the
    Ingest step reads ``"03"`` as 3 and ``"TRUE"`` as True, a user's raw rows may not).
    """
    if _is_missing(value):
        return _MISSING
    if isinstance(value, str):
        return _text_category(value.strip())
    if isinstance(value, bool | np.bool_):
        return _TRUE if value else _FALSE
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def _text_category(text: str) -> str:
    if text.lower() in (_TRUE, _FALSE):
        return text.lower()
    if _INTEGER.fullmatch(text):
        return str(int(text))
    try:
        return _category(float(text))
    except ValueError:
        return text


def to_numbers(X: Any, column: str | None = None) -> np.ndarray:
    """Numbers as float64 of shape (n, 1): ``true``/``false`` are 1/0, missing is NaN.

    Parameters
    ----------
    X : array-like of shape (n,) or (n, 1)
    column : str or None, default=None
        The column's name, for messages (an exported Pipeline's steps give it).

    Raises
    ------
    ValueError
        Naming the first cell that is not a number (and ``column``).
    """
    array = _cells(X)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64).reshape(-1, 1)
    return _named(column, _per_value, array, _number, np.float64).reshape(-1, 1)


def to_days(X: Any, column: str | None = None) -> np.ndarray:
    """ISO 8601 dates as float64 days since 1970-01-01T00:00 UTC, shape (n, 1); missing NaN.

    Parameters
    ----------
    X : array-like of shape (n,) or (n, 1)
    column : str or None, default=None
        The column's name, for messages (an exported Pipeline's steps give it).

    Raises
    ------
    ValueError
        Naming the first cell that is not an ISO 8601 date or date-time (and ``column``).
    """
    array = _cells(X)
    if array.dtype.kind == "M":
        array = array.astype("datetime64[us]").astype(object)  # NaT becomes None
    return _named(column, _per_value, array, _day, np.float64).reshape(-1, 1)


def _named(column: str | None, work: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
    """``work(*args)``, whose ValueError names ``column`` when one is given."""
    try:
        return work(*args)
    except ValueError as problem:
        if column is None:
            raise
        raise ValueError(f"column {column!r}: {problem}") from None


def to_categories(X: Any) -> np.ndarray:
    """Category texts, shape (n, 1), object dtype; a missing value is ``""`` (one-hot)."""
    return _per_value(_cells(X), _category, object).reshape(-1, 1)


def to_categories_or_nan(X: Any) -> np.ndarray:
    """Category texts, shape (n, 1), object dtype; a missing value is NaN (ordinal)."""
    texts = to_categories(X)
    texts[texts == _MISSING] = np.nan
    return texts


# --------------------------------------------------------------------------- the encoding


@dataclass(frozen=True)
class ColumnEncoding:
    """How one input column becomes features.

    Parameters
    ----------
    name : str
        The input column.
    kind : {"numeric", "date", "onehot", "ordinal"}
    categories : tuple of str, default=()
        The training rows' categories, sorted (``""`` is one-hot's missing category).
    """

    name: str
    kind: str
    categories: tuple[str, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        """The features this column becomes (``name=category`` for one-hot)."""
        if self.kind != "onehot":
            return [self.name]
        return [f"{self.name}={c or MISSING_NAME}" for c in self.categories]

    def encode(self, values: Any) -> np.ndarray:
        """This column's features, float64 of shape (n, width)."""
        if self.kind == "numeric":
            return to_numbers(values)
        if self.kind == "date":
            return to_days(values)
        texts = to_categories(values)[:, 0].astype(str)
        known = np.asarray(self.categories, dtype=str)
        position = np.searchsorted(known, texts).clip(0, len(known) - 1)
        found = known[position] == texts
        if self.kind == "ordinal":
            return np.where(found, position, np.nan).astype(np.float64).reshape(-1, 1)
        out = np.zeros((len(texts), len(known)), dtype=np.float64)
        out[np.flatnonzero(found), position[found]] = 1.0
        return out


@dataclass(frozen=True)
class Encoding:
    """A learned, versioned encoding of a table's feature columns, in their order.

    The forest's features are the columns' features in column order, a one-hot column's
    expanded in place (:attr:`feature_names`).
    """

    columns: tuple[ColumnEncoding, ...]

    @property
    def input_names(self) -> list[str]:
        """The raw columns a batch must have, in this order."""
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        """The forest's features."""
        return [name for c in self.columns for name in c.feature_names]

    def transform(
        self,
        columns: Mapping[str, Any],
        source: str = "the rows",
        error: type[Exception] = InvalidDataset,
    ) -> np.ndarray:
        """The float32 feature matrix of raw ``columns`` (looked up once each, by name).

        Raises
        ------
        error
            Naming the column and cell a numeric or date column cannot read.
        """
        out: np.ndarray | None = None
        start = 0
        for column in self.columns:
            try:
                block = column.encode(columns[column.name])
            except ValueError as problem:
                raise error(f"column {column.name!r} of {source}: {problem}") from None
            if out is None:
                out = np.empty((len(block), len(self.feature_names)), dtype=np.float32)
            out[:, start : start + block.shape[1]] = block
            start += block.shape[1]
        assert out is not None  # an encoding has a column
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the run record and the model manifest."""
        return {
            "encoding_version": ENCODING_VERSION,
            "columns": [
                {"name": c.name, "kind": c.kind, "categories": list(c.categories)}
                for c in self.columns
            ],
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "the encoding") -> Encoding:
        """The encoding ``raw`` holds; :class:`ArtifactError` naming what is wrong with it."""
        if not isinstance(raw, dict) or not isinstance(raw.get("columns"), list):
            raise ArtifactError(f"{where} must be an object with a list of columns")
        version = raw.get("encoding_version")
        if version != ENCODING_VERSION:
            raise ArtifactError(
                f"{where} has encoding_version={version!r}; this groveflow reads "
                f"{ENCODING_VERSION}: upgrade groveflow to read it"
            )
        columns = tuple(_column_from_dict(c, where) for c in raw["columns"])
        names = [c.name for c in columns]
        if not columns or len(set(names)) != len(names):
            raise ArtifactError(f"{where} must name each of one or more columns once: {names}")
        return cls(columns)

    def to_sklearn(self) -> Any:
        """This encoding as a fitted scikit-learn ``ColumnTransformer`` of the raw columns.

        It reads a 2-D array (object dtype) of the raw columns in :attr:`input_names`
        order, a column by its position (a DataFrame's columns too, in that order), and
        gives the float64 features groveflow's forest reads: stock ``OneHotEncoder`` and
        ``OrdinalEncoder`` with the stored categories, after :func:`to_categories`;
        numbers and dates through :func:`to_numbers` and :func:`to_days`. Loading it
        needs groveflow importable (those functions live here).
        """
        from sklearn.compose import ColumnTransformer

        transformers = [
            (f"{i}:{c.name.replace('__', '_')}", _sklearn_step(c), [i])
            for i, c in enumerate(self.columns)
        ]
        encoder = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
        return encoder.fit(self._fit_rows())

    def pipeline(self, forest: Any) -> Any:
        """``Pipeline([("encode", self.to_sklearn()), ("forest", forest)])``."""
        from sklearn.pipeline import Pipeline

        return Pipeline([("encode", self.to_sklearn()), ("forest", forest)])

    def _fit_rows(self) -> np.ndarray:
        """Raw rows holding every stored category: what the scikit-learn encoders fit on."""
        n_rows = max([1, *(len(c.categories) for c in self.columns)])
        rows = np.empty((n_rows, len(self.columns)), dtype=object)
        for j, column in enumerate(self.columns):
            example = {"numeric": ["0"], "date": ["1970-01-01"]}.get(column.kind)
            values = example or list(column.categories)
            rows[:, j] = [values[i % len(values)] for i in range(n_rows)]
        return rows


def stored_encoding(document: Any, where: str) -> Encoding | None:
    """The encoding a run record or model manifest stores; None if it has none (numeric data).

    Raises
    ------
    ArtifactError
        If the stored encoding is damaged, naming ``where``.
    """
    raw = document.get("encoding") if isinstance(document, dict) else None
    return None if raw is None else Encoding.from_dict(raw, f"the encoding in {where}")


def _sklearn_step(column: ColumnEncoding) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

    if column.kind == "numeric":
        return FunctionTransformer(to_numbers, kw_args={"column": column.name})
    if column.kind == "date":
        return FunctionTransformer(to_days, kw_args={"column": column.name})
    if column.kind == "onehot":
        return make_pipeline(
            FunctionTransformer(to_categories),
            OneHotEncoder(
                categories=[list(column.categories)],
                handle_unknown="ignore",
                sparse_output=False,
                dtype=np.float64,
            ),
        )
    return make_pipeline(
        FunctionTransformer(to_categories_or_nan),
        OrdinalEncoder(
            categories=[list(column.categories)],
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            dtype=np.float64,
        ),
    )


def _column_from_dict(raw: Any, where: str) -> ColumnEncoding:
    if not isinstance(raw, dict):
        raise ArtifactError(f"{where}: a column entry must be an object, got {raw!r}")
    name, kind, categories = raw.get("name"), raw.get("kind"), raw.get("categories")
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{where}: a column's name must be a non-empty string, got {name!r}")
    if kind not in KINDS:
        raise ArtifactError(f"{where}: column {name!r} has kind {kind!r}; known: {list(KINDS)}")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ArtifactError(f"{where}: column {name!r} needs a list of category texts")
    if categories != sorted(set(categories)):
        raise ArtifactError(f"{where}: column {name!r}'s categories are not sorted and distinct")
    if (kind in ENCODINGS) != bool(categories) or (kind == "ordinal" and _MISSING in categories):
        raise ArtifactError(
            f"{where}: column {name!r} of kind {kind!r} has categories {categories[:5]}"
        )
    return ColumnEncoding(name, kind, tuple(categories))


# --------------------------------------------------------------------------- learning


def fit(
    columns: Mapping[str, Any],
    names: list[str],
    rows: np.ndarray | None,
    spec: CategoricalSpec,
    source: str = "the data",
) -> Encoding:
    """Learn the encoding of the feature columns ``names`` from the training ``rows``.

    A column's kind is decided from all its rows (it is a property of the table); its
    categories from the training rows only, so categories only the test rows hold are
    unknown to the model, as a scoring batch's new ones are.

    Parameters
    ----------
    columns : mapping of str to array-like
        The table's raw columns: numbers, booleans or text (lists or arrays).
    names : list of str
        The feature columns, in the forest's order.
    rows : ndarray of int or None
        The training rows; all rows if None.
    spec : CategoricalSpec
    source : str, default="the data"
        Named in messages.

    Raises
    ------
    InvalidDataset
        For a named column the data lacks, a non-numeric column ``spec`` does not name, a
        one-hot column over ``spec.max_categories`` (with its count), a date column with a
        value that is not a date, or a categorical column with no value in the training rows.
    """
    unknown = [c for c in spec.named() if c not in names]
    if unknown:
        raise InvalidDataset(
            f"data.categorical names columns {unknown} that are not feature columns of "
            f"{source}; feature columns are: {names}"
        )
    encoded, refused = [], []
    for name in names:
        raw = _cells(columns[name])
        kind = _kind(raw, name, spec)
        if kind is None:
            refused.append(name)
            continue
        encoded.append(_learn(name, kind, raw=raw, rows=rows, spec=spec, source=source))
    if refused:
        raise InvalidDataset(
            f"non-numeric feature columns in {source}: {refused}. groveflow does not encode "
            "categories silently: name them in data.categorical (or set it to 'auto'), or "
            "list them in data.exclude"
        )
    return Encoding(tuple(encoded))


def _kind(raw: np.ndarray, name: str, spec: CategoricalSpec) -> str | None:
    """What column ``name`` is: None for text the spec does not let be encoded."""
    chosen = spec.encodings.get(name)
    if chosen is not None:
        return chosen
    if raw.dtype.kind == "b":
        return "numeric"
    listed = spec.columns != AUTO and name in spec.columns
    if not listed:
        if raw.dtype.kind in "iuf" or _all(raw, _number):
            return "numeric"
        if spec.columns != AUTO:
            return None
    if raw.dtype.kind not in "iuf" and _all(raw, _day) and not _all(raw, _only_missing):
        return "date"
    return spec.encoding


def _only_missing(value: Any) -> float:
    if not _is_missing(value):
        raise ValueError(f"{_shown(value)} is a value")
    return math.nan


def _all(raw: np.ndarray, convert: Callable[[Any], float]) -> bool:
    try:
        _per_value(raw, convert, np.float64)
    except ValueError:
        return False
    return True


def _learn(
    name: str,
    kind: str,
    *,
    raw: np.ndarray,
    rows: np.ndarray | None,
    spec: CategoricalSpec,
    source: str,
) -> ColumnEncoding:
    if kind in ("numeric", "date"):
        check = to_numbers if kind == "numeric" else to_days
        try:
            check(raw)
        except ValueError as problem:
            raise InvalidDataset(f"column {name!r} of {source}: {problem}") from None
        return ColumnEncoding(name, kind)
    texts = to_categories(raw if rows is None else raw[rows])[:, 0]
    found = sorted(set(texts.tolist()))
    values = [c for c in found if c != _MISSING]
    if not values:
        raise InvalidDataset(
            f"column {name!r} of {source} has no value in the training rows: list it in "
            "data.exclude"
        )
    if kind == "onehot" and len(values) > spec.max_categories:
        raise InvalidDataset(
            f"column {name!r} of {source} has {len(values)} distinct values in the training "
            f"rows, more than data.categorical.max_categories={spec.max_categories} for one-hot "
            f"encoding: encode it as ordinal (data.categorical.encodings: {{{name!r}: "
            "'ordinal'}), raise max_categories, or list it in data.exclude"
        )
    if kind == "ordinal" and len(values) > MAX_ORDINAL_CATEGORIES:
        raise InvalidDataset(
            f"column {name!r} of {source} has {len(values)} distinct values in the training "
            f"rows, more than an ordinal column may have ({MAX_ORDINAL_CATEGORIES}): "
            "list it in data.exclude"
        )
    return ColumnEncoding(name, kind, tuple(found if kind == "onehot" else values))

"""Ingest: CSV and Parquet become the columnar files the plan and predict read, in their own step.

pyarrow (123 MiB unzipped; its layer 180 MiB) and scikit-learn's layer (196 MiB) cannot share one
Lambda: together they exceed the 250 MB limit. So an ``Ingest`` step, with a layer of pyarrow
and numpy only, runs first when the input names CSV or Parquet (training data, a training run's
``predict`` rows, a prediction run's rows); ``sklearn:``, ``.npy`` and ``.npz`` are read directly.

Reading. CSV through pyarrow with explicit options: the header row names the columns (a
UTF-8 BOM is skipped), ``data.delimiter`` (a tab for ``.tsv``), double quotes (``""`` inside
quotes is a quote), every letter case of :data:`groveflow.datasets.MISSING_MARKERS` as
missing, in text columns too. An uncompressed file up to :data:`WHOLE_READ_BYTES` is read at
once by ``pyarrow.csv.read_csv`` (its blocks parsed in parallel); a larger one a range of whole
lines (about :data:`RANGE_BYTES`) at a time, each range by ``read_csv`` and written while the
next is read (:func:`_ranged_csv`); a ``.gz`` file, or one the range reader refuses, by
``pyarrow.csv.open_csv``, a streaming reader that decompresses as it reads, in blocks of
:data:`BLOCK_BYTES`. Parquet is read a few row groups at a time
(``ParquetFile.read_row_groups``, columns decoded in parallel). No large file is held whole:
peak memory is about two ranges (one being parsed, one being written) or a few row groups,
plus one column's numpy copy while a part is written.

Layout. Each input file becomes one or more parts,
``converted/<state machine>/<execution>/<section>/part-NNNNN.gfcols`` (a zip of ``.npy``
members, :func:`groveflow.datasets.write_columns`), numbered in input order; a part holds up
to :data:`PART_BYTES` of decoded columns, so a big CSV becomes several parts the predict
shards (and later shard readers) take one at a time. A part is written to a temporary file a
column at a time and uploaded from the file.

Column types, per part: floats ``float64`` (missing: NaN); integers ``int64`` (``uint64``
beyond its range), or ``float64`` in a part where some are missing (beyond 2**53, the nearest
double); booleans ``bool`` (``float64`` 0/1/NaN where some are missing); text, and the id
column a prediction names (exact, in CSV and Parquet), unicode strings (missing: ``""``);
dates and timestamps ISO 8601 text as pyarrow writes it (``2024-01-31``,
``2024-01-31 12:00:00``): their numeric encoding is decided where categorical and text
columns are encoded, not here. The Parquet files of one dataset must agree on each column's
kind (numbers or text); columns pandas stored as the DataFrame's index (its metadata lists
them: ``__index_level_0__``, or a named index) are not read unless the request names them.
Each part records the user's file it holds rows of (:func:`groveflow.datasets.mark_source`),
which messages name.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from groveflow import storage, telemetry
from groveflow.datasets import (
    COLUMNS_SUFFIX,
    CONVERTED_FORMAT,
    INGESTED_FORMATS,
    MISSING_MARKERS,
    check_readable,
    format_of,
    mark_source,
    sources,
    write_columns,
)
from groveflow.errors import DatasetNotFound, GroveflowError, InvalidDataset, InvalidRequest
from groveflow.layout import keys
from groveflow.request import DataSpec, parse_data, parse_predict_request, parse_train_request

__all__ = [
    "BLOCK_BYTES",
    "PARQUET_BATCH_BYTES",
    "PART_BYTES",
    "RANGE_BYTES",
    "check_before_ingest",
    "ingest",
    "ingest_file",
    "ingest_parts",
    "missing_values",
]

BLOCK_BYTES = 2**18
"""Bytes of CSV text parsed at a time by the streaming reader (pyarrow's ``block_size``), for a
``.gz`` file or one read serially; pyarrow decodes blocks ahead of the one it returns, so larger
blocks hold more."""
PART_BYTES = 8 * 2**20
"""Decoded bytes (pyarrow's) after which a part is written and a new one begun."""
RANGE_BYTES = 8 * 2**20
"""Bytes of CSV text :func:`_ranged_csv` reads at once, cut at a line break. benchmarks/ingest.py
on a shared, loaded 2-CPU host, against ``read_csv`` + ``to_numpy``, for a 100 MB / 1 GB CSV:
8 MiB ranges in 1 MiB blocks 0.78-1.21x / 0.53-1.11x the reader's time, peaking at
1.63-1.83x / 0.17-0.18x the file. Ingest alone on the 100 MB file, 1 MiB blocks: 4 MiB ranges
peak lower (135-141 MB against 147-170 MB) but take 0.34-0.37 s against 0.23-0.26 s; 16 MiB
ranges peak higher (163-179 MB) for no gain. The one streaming reader per CPU this replaced
(256 KiB blocks, over Python file objects) took 1.31-1.64x / 1.01-1.13x, at 1.83-1.90x /
0.20x."""
RANGE_BLOCK_BYTES = 2**20
"""pyarrow's ``block_size`` within a range: the blocks ``read_csv`` parses in parallel (256 KiB
and 512 KiB blocks are slower and hold about as much)."""
PARQUET_BATCH_BYTES = 4 * 2**20
"""Parquet row groups are read together up to this many bytes (pyarrow decodes their columns
in parallel); a larger row group is read alone."""
WHOLE_READ_BYTES = 16 * 2**20
"""An uncompressed CSV up to this size is read at once (:func:`_whole_csv`: its peak is about
3x the file, small at this size); a larger one by ranges (:func:`_ranged_csv`)."""


def missing_values() -> list[str]:
    """Every letter case of every missing marker: pyarrow compares null values exactly."""
    variants: set[str] = set()
    for marker in MISSING_MARKERS:
        cases = [(c.lower(), c.upper()) if c.isalpha() else (c,) for c in marker]
        variants.update("".join(letters) for letters in itertools.product(*cases))
    return sorted(variants)


def _delimiter(source: str, spec: DataSpec) -> str:
    return "\t" if source.lower().removesuffix(".gz").endswith(".tsv") else spec.delimiter


def _csv_options(
    source: str, spec: DataSpec, types: dict[str, Any], newlines: bool = False
) -> dict[str, Any]:
    """pyarrow's options for reading ``source``; ``newlines`` lets quoted values hold line
    breaks (pyarrow then cannot cut blocks at any line break, and parses more slowly)."""
    import pyarrow.csv as pacsv

    return {
        "read_options": pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding="utf8"),
        "parse_options": pacsv.ParseOptions(
            delimiter=_delimiter(source, spec),
            quote_char='"',
            double_quote=True,
            newlines_in_values=newlines,
        ),
        "convert_options": pacsv.ConvertOptions(
            null_values=missing_values(),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            column_types=types,
        ),
    }


def _csv_reader(
    path: Path, source: str, spec: DataSpec, types: dict[str, Any], newlines: bool = False
) -> Any:
    """pyarrow's streaming reader of the CSV (``schema``, then record batches)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    compression = "gzip" if source.lower().endswith(".gz") else None
    stream = pa.input_stream(str(path), compression=compression)
    return pacsv.open_csv(stream, **_csv_options(source, spec, types, newlines))


def _whole_csv(
    path: Path, source: str, spec: DataSpec, types: dict[str, Any], newlines: bool = False
) -> Any:
    """The CSV read at once, its blocks parsed in parallel: for files of at most
    :data:`WHOLE_READ_BYTES`, where the streaming reader (one block after another) is
    about three times slower and the table costs little more than its readahead."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(str(path), **_csv_options(source, spec, types, newlines))


_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")
_WIDER = {"null": "float64", "int64": "float64", "bool": "float64"}


def _ragged_line(path: Path, source: str, spec: DataSpec) -> str:
    """Re-read a CSV pyarrow found ragged on one thread, which numbers the row it stops at."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    found: list[Any] = []

    def keep(row: Any) -> str:
        found.append(row)
        return "error"

    compression = "gzip" if source.lower().endswith(".gz") else None
    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(path), compression=compression),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                delimiter=_delimiter(source, spec),
                newlines_in_values=True,
                invalid_row_handler=keep,
            ),
        )
        for _ in reader:
            pass
    except pa.ArrowInvalid:
        pass
    if not found:
        return f"{source} has a row whose field count differs from the header's"
    row = found[0]
    where = f"line {row.number}" if row.number is not None else f"the row {row.text[:60]!r}"
    return (
        f"{source} {where} has {row.actual_columns} fields; the header has {row.expected_columns}"
    )


RESTART = None
"""What :func:`_csv_batches` yields before reading a file again: drop what it gave so far."""
_OUT_OF_STEP = ("CSV parser got out of sync with chunker", "Expected")


def _csv_batches(path: Path, source: str, spec: DataSpec, text: tuple[str, ...]) -> Iterator[Any]:
    """The CSV's record batches, or :data:`RESTART` before it is read again, wider.

    A column whose later blocks do not parse as the type the first block gave is widened
    (integers to floats, then to text) and the file re-read. Blocks are cut at line breaks,
    as pyarrow does by default; a file that then falls out of step (a quoted value holding a
    line break) is re-read with quoted line breaks allowed, which parses more slowly.
    """
    import pyarrow as pa

    types: dict[str, Any] = {name: pa.string() for name in text}
    newlines = False
    while True:
        try:
            whole = not source.lower().endswith(".gz") and path.stat().st_size <= WHOLE_READ_BYTES
            reader = (_whole_csv if whole else _csv_reader)(path, source, spec, types, newlines)
            _check_names([n.strip() for n in reader.schema.names], source)
            yield from reader.to_batches() if whole else reader
            return
        except pa.ArrowInvalid as error:
            message = str(error)
            wider = _CONVERSION_ERROR.search(message)
            if wider is not None:
                names = _csv_reader(path, source, spec, {}, newlines).schema.names
                types[names[int(wider.group(1))]] = getattr(
                    pa, _WIDER.get(wider.group(2), "string")
                )()
            elif not newlines and any(words in message for words in _OUT_OF_STEP):
                newlines = True
            else:
                raise _csv_error(message, path, source, spec) from None
            yield RESTART
        except OSError as error:  # pyarrow's I/O errors, a damaged gzip stream among them
            kind = "gzip" if source.lower().endswith(".gz") else "CSV"
            raise InvalidDataset(f"{source} is not a readable {kind} file: {error}") from None
        except pa.ArrowException as error:
            raise _csv_error(str(error), path, source, spec) from None


def _csv_error(message: str, path: Path, source: str, spec: DataSpec) -> InvalidDataset:
    if "Empty CSV file" in message:
        return InvalidDataset(f"{source} is empty: a CSV needs a header row and data rows")
    if any(words in message for words in _OUT_OF_STEP):
        return InvalidDataset(_ragged_line(path, source, spec))
    if "UTF8" in message or "UTF-8" in message:
        return InvalidDataset(f"{source} is not UTF-8 text: {message}")
    return InvalidDataset(f"{source} is not a readable CSV file: {message}")


def _check_names(names: list[str], source: str) -> None:
    if len(set(names)) != len(names) or "" in names:
        raise InvalidDataset(f"{source} has a blank or repeated column name in its header: {names}")


def _parquet_columns(schema: Any, named: set[str]) -> list[str]:
    """A Parquet file's columns to read: all but those pandas stored as the DataFrame's index
    (``__index_level_0__``, or a named index: the file's pandas metadata lists them), unless
    the request names one (as the target, a feature or the id column)."""
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    dropped = {c for c in index if isinstance(c, str) and c.strip() not in named}
    return [name for name in schema.names if name not in dropped]


def _parquet_batches(path: Path, source: str, named: set[str]) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(str(path))
        columns = _parquet_columns(file.schema_arrow, named)
        _check_names([n.strip() for n in columns], source)
        # Row groups read together up to PARQUET_BATCH_BYTES; a larger one is read alone,
        # the most held besides the part.
        groups: list[int] = []
        size = 0
        for group in range(file.num_row_groups):
            groups.append(group)
            size += file.metadata.row_group(group).total_byte_size
            if size >= PARQUET_BATCH_BYTES or group == file.num_row_groups - 1:
                yield from file.read_row_groups(groups, columns=columns).to_batches()
                groups, size = [], 0
    except (pa.ArrowException, OSError) as error:
        raise InvalidDataset(f"{source} is not a readable Parquet file: {error}") from None


def _column(chunks: Any, name: str, source: str, text: bool = False) -> np.ndarray:
    """A pyarrow column as numpy: numbers, booleans, or unicode strings (see the module);
    ``text``: unicode strings whatever it holds (an id column, exact however long)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = chunks.type
    if pa.types.is_null(kind) and not text:
        return np.full(len(chunks), np.nan)
    if pa.types.is_decimal(kind) and not text:
        chunks, kind = pc.cast(chunks, pa.float64(), safe=False), pa.float64()
    numeric = pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if numeric and not text:
        # Unsafe casts: an integer beyond 2**53 becomes its nearest double, as numpy's would
        # (a 64-bit id or hash; a feature is float32 in the end).
        if chunks.null_count:
            chunks = pc.cast(chunks, pa.float64(), safe=False)
        elif pa.types.is_uint64(kind) and (pc.max(chunks).as_py() or 0) > np.iinfo(np.int64).max:
            pass  # uint64 as it is: numpy's uint64 holds it
        elif pa.types.is_integer(kind):
            chunks = pc.cast(chunks, pa.int64())
        elif pa.types.is_floating(kind):
            chunks = pc.cast(chunks, pa.float64())
        return np.asarray(chunks.to_numpy())
    try:
        strings = pc.fill_null(pc.cast(chunks, pa.string()), "")
    except pa.ArrowException as error:
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise InvalidDataset(f"{source} is not UTF-8 text (column {name!r})") from None
        raise InvalidDataset(
            f"column {name!r} of {source} has type {kind}, which groveflow cannot read: {error}"
        ) from None
    return np.asarray(strings.to_numpy(zero_copy_only=False), dtype=str)


def _write_part(
    path: Path,
    names: list[str],
    batches: list[Any],
    schema: Any,
    source: str,
    *,
    text: tuple[str, ...] = (),
) -> int:
    import pyarrow as pa

    table = pa.Table.from_batches(batches, schema=schema)
    batches.clear()
    raw = table.column_names
    columns = (_column(table.column(i), raw[i], source, names[i] in text) for i in range(len(raw)))
    write_columns(path, names, columns)
    return int(table.num_rows)


def ingest_file(
    source: str, spec: DataSpec, scratch: Path, *, text_columns: tuple[str, ...] = ()
) -> tuple[list[str], list[Path], int]:
    """Read one CSV or Parquet file into ``.gfcols`` parts under ``scratch``.

    Parameters
    ----------
    source : str
        A local path or ``s3://`` URI (downloaded to ``scratch`` first).
    spec : DataSpec
        The ``data`` section (format, delimiter).
    scratch : Path
        A directory for the download and the parts.
    text_columns : tuple of str, default=()
        Columns read as text whatever they hold (a prediction's id column).

    Returns
    -------
    tuple
        The column names, the parts' paths in row order, and the number of rows.
    """
    names, parts, rows, _ = _ingest_file(source, spec, scratch, text_columns)
    for part in parts:  # errors about a part name the user's file, not the part
        mark_source(part, source, spec.uri)
    return names, parts, rows


def _ingest_file(
    source: str, spec: DataSpec, scratch: Path, text_columns: tuple[str, ...]
) -> tuple[list[str], list[Path], int, dict[str, Any]]:
    """:func:`ingest_file`, and the Parquet file's column types (CSV: ``{}``, inferred)."""
    fmt = format_of(source, spec)
    path = Path(source).expanduser()
    downloaded = source.startswith("s3://")
    if downloaded:
        path = scratch / ("input" + "".join(Path(source).suffixes[-2:]))
        storage.download(source, path)
    elif not path.is_file():
        raise DatasetNotFound(f"no such file or object: {source}")
    if fmt == "csv":
        ranged = _ranged_csv(path, source, spec, text_columns, scratch)
        if ranged is not None:
            if downloaded:
                path.unlink()
            return (*ranged, {})
    named = {
        *text_columns,
        *(spec.features or ()),
        *(name for name in (spec.target, spec.weight) if name),
    }
    batches_of = (
        _parquet_batches(path, source, named)
        if fmt == "parquet"
        else _csv_batches(path, source, spec, text_columns)
    )
    names, parts, rows = _write_parts(batches_of, scratch, "part-", source, text_columns)
    types: dict[str, Any] = {}
    if not parts or fmt == "parquet":  # a header without rows: pyarrow gives a schema, no batch
        schema, names = _empty_schema(path, source, spec, fmt, named)
        types = dict(zip(names, schema.types, strict=True)) if fmt == "parquet" else {}
    if not parts:
        parts.append(scratch / f"part-00000{COLUMNS_SUFFIX}")
        rows += _write_part(parts[-1], names, [], schema, source, text=text_columns)
    if downloaded:
        path.unlink()
    return names, parts, rows, types


def _type_kind(kind: Any) -> str | None:
    """What a column of this pyarrow type becomes: numbers or text (None: all missing)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind):
        return None
    if any(is_kind(kind) for is_kind in (pa.types.is_integer, pa.types.is_floating)):
        return "numbers"
    if pa.types.is_boolean(kind) or pa.types.is_decimal(kind):
        return "numbers"
    return "text"  # dates and times too: Ingest writes them as ISO 8601 text


def _check_types(types: dict[str, Any], source: str, first: dict[str, tuple[Any, str]]) -> None:
    """Refuse a Parquet file whose column holds another kind of value than an earlier file's
    (text in one, numbers in another): one table's column has one type. ``first`` gathers
    each column's first typed file."""
    for name, kind in types.items():
        seen = first.get(name)
        if _type_kind(kind) is None:
            continue
        if seen is None:
            first[name] = (kind, source)
        elif _type_kind(seen[0]) != _type_kind(kind):
            raise InvalidDataset(
                f"column {name!r} is {_type_kind(kind)} ({kind}) in {source} but "
                f"{_type_kind(seen[0])} ({seen[0]}) in {seen[1]}: the files of one dataset "
                "must give each column one type (write them from one DataFrame, or cast it)"
            )


def _write_parts(
    batches_of: Iterator[Any], scratch: Path, stem: str, source: str, text: tuple[str, ...] = ()
) -> tuple[list[str], list[Path], int]:
    """Gather record batches into parts of :data:`PART_BYTES`, written under ``scratch``."""
    parts: list[Path] = []
    pending: list[Any] = []
    pending_bytes = 0
    schema = None
    names: list[str] = []
    rows = 0
    for batch in batches_of:
        if batch is RESTART:  # the CSV is read again (a column widened): drop what it gave
            parts, pending, schema, rows, pending_bytes = [], [], None, 0, 0
            continue
        if schema is None:
            schema, names = batch.schema, [n.strip() for n in batch.schema.names]
        # A batch larger than a part (a big Parquet row group) is cut into slices (views)
        # of about PART_BYTES, so no part is larger than its readers expect.
        size = batch.get_total_buffer_size()
        step = max(1, -(-batch.num_rows * PART_BYTES // max(size, 1)))
        for start in range(0, max(batch.num_rows, 1), step):
            piece = batch.slice(start, step) if size > PART_BYTES else batch
            pending.append(piece)
            pending_bytes += size * piece.num_rows // max(batch.num_rows, 1)
            if pending_bytes >= PART_BYTES:
                pending_bytes = 0
                parts.append(scratch / f"{stem}{len(parts):05d}{COLUMNS_SUFFIX}")
                rows += _write_part(parts[-1], names, pending, schema, source, text=text)
            if piece is batch:
                break
    if pending:
        parts.append(scratch / f"{stem}{len(parts):05d}{COLUMNS_SUFFIX}")
        rows += _write_part(parts[-1], names, pending, schema, source, text=text)
    return names, parts, rows


def _line_cuts(path: Path, step: int) -> list[int]:
    """Offsets splitting a file into ranges of whole lines of about ``step`` bytes each (every
    cut just after a line break), from 0 to the file's size."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as handle:
        while cuts[-1] + step < size:
            handle.seek(cuts[-1] + step)
            handle.readline()
            cuts.append(handle.tell())
    return cuts if cuts[-1] >= size else [*cuts, size]


def _ranged_csv(
    path: Path, source: str, spec: DataSpec, text: tuple[str, ...], scratch: Path
) -> tuple[list[str], list[Path], int] | None:
    """A large uncompressed CSV read one range of whole lines (about :data:`RANGE_BYTES`) at a
    time by ``pyarrow.csv.read_csv``, which parses a range's blocks in parallel (pyarrow's
    streaming reader parses one block after another, about three times slower); each range
    is read from the file by pyarrow itself (``NativeFile.get_stream``, no Python in the
    reads) while the one before is written, on another thread, as its parts (in row order).
    The ranges are cut at line breaks, as pyarrow cuts its own blocks; the later ranges take
    the first's header and column types. None (read it serially) for a small or compressed
    file, or any error but a column to widen: the serial reader names errors and reads
    quoted line breaks.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if source.lower().endswith(".gz") or path.stat().st_size <= WHOLE_READ_BYTES:
        return None
    cuts = _line_cuts(path, RANGE_BYTES)
    types: dict[str, Any] = {name: pa.string() for name in text}
    for attempt in itertools.count():
        stem = f"try{attempt}-"
        options = _csv_options(source, spec, types)
        options["read_options"].block_size = RANGE_BLOCK_BYTES
        names: list[str] = []
        written: list[Any] = []
        try:
            with pa.OSFile(str(path)) as file, ThreadPoolExecutor(max_workers=1) as writer:
                for number, (start, stop) in enumerate(itertools.pairwise(cuts)):
                    table = pacsv.read_csv(file.get_stream(start, stop - start), **options)
                    if number == 0:
                        names = table.schema.names
                        _check_names([n.strip() for n in names], source)
                        options["read_options"].column_names = names
                        options["convert_options"].column_types = {
                            field.name: field.type for field in table.schema
                        }
                    if written:
                        written[-1].result()  # one range written while the next is read
                    batches = iter(table.to_batches())
                    del table  # the writer's batches are the only reference: freed as written
                    prefix = f"{stem}{number:05d}-"
                    written.append(
                        writer.submit(_write_parts, batches, scratch, prefix, source, text)
                    )
                ranges = [done.result() for done in written]
        except Exception as error:
            for part in scratch.glob(f"{stem}*"):
                part.unlink()
            if isinstance(error, InvalidDataset):  # a blank or repeated column name
                raise
            wider = _CONVERSION_ERROR.search(str(error))
            if not isinstance(error, pa.ArrowInvalid) or wider is None:
                return None
            if not names:  # the first range's own later blocks: its header names the columns
                try:
                    names = _csv_reader(path, source, spec, {}).schema.names
                except pa.ArrowException:
                    return None
            types[names[int(wider.group(1))]] = getattr(pa, _WIDER.get(wider.group(2), "string"))()
            continue
        parts = [part for _, range_parts, _ in ranges for part in range_parts]
        return [n.strip() for n in names], parts, sum(rows for _, _, rows in ranges)
    return None


def _empty_schema(
    path: Path, source: str, spec: DataSpec, fmt: str, named: set[str]
) -> tuple[Any, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        schema = pq.ParquetFile(str(path)).schema_arrow
        schema = pa.schema([schema.field(name) for name in _parquet_columns(schema, named)])
    else:
        schema = _csv_reader(path, source, spec, {}).schema
    return schema, [n.strip() for n in schema.names]


def ingest_parts(spec: DataSpec, *, text_columns: tuple[str, ...] = ()) -> Iterator[Path]:
    """Ingest every file ``spec`` names, in order; yield each part's path as it is written.

    A part's temporary file lasts until the next is asked for: copy or upload it first.

    Raises
    ------
    InvalidDataset
        Naming the file and what is wrong (see :func:`ingest_file`), or a file whose
        columns differ from the first file's, or a Parquet file whose column holds another
        kind of value (numbers or text) than an earlier file's.
    """
    first: list[str] | None = None
    typed: dict[str, tuple[Any, str]] = {}
    for source in sources(spec.uri):
        with tempfile.TemporaryDirectory(prefix="groveflow-ingest-") as scratch:
            names, parts, rows, types = _ingest_file(source, spec, Path(scratch), text_columns)
            for part in parts:  # errors about a part name the user's file, not the part
                mark_source(part, source, spec.uri)
            if first is not None and names != first:
                raise InvalidDataset(f"{source} has columns {names}; the first file has {first}")
            _check_types(types, source, typed)
            first = first or names
            telemetry.logger.info(
                "ingested", extra={"source": source, "parts": len(parts), "rows": rows}
            )
            yield from parts


def _ingest_section(
    spec: DataSpec, bucket: str, prefix: str, text_columns: tuple[str, ...]
) -> dict[str, Any]:
    """Ingest every file a section names; the parts go under ``s3://bucket/prefix``."""
    number = 0
    for number, part in enumerate(ingest_parts(spec, text_columns=text_columns), start=1):
        storage.put_file(bucket, keys.converted_part(prefix, number - 1, COLUMNS_SUFFIX), part)
    return {"uri": f"s3://{bucket}/{prefix}", "format": CONVERTED_FORMAT, "files": number}


def _ingested_spec(data: Any) -> DataSpec | None:
    """The section's spec when Ingest reads it (CSV or Parquet files); None when read directly."""
    if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
        return None
    if data["uri"].startswith("sklearn:"):
        return None
    rows = {key: value for key, value in data.items() if key != "id_column"}
    spec = parse_data(rows, allowed=set(rows))
    files = sources(spec.uri)
    formats = {format_of(source, spec) for source in files}
    if not formats & INGESTED_FORMATS:
        return None
    if len(formats) > 1:
        raise InvalidDataset(
            f"{spec.uri} holds files of several formats ({sorted(formats)}); "
            "give one format per prefix"
        )
    return spec


def check_before_ingest(event: dict[str, Any]) -> dict[str, Any]:
    """Validate the request an ingest is about to run for, so a bad one reads nothing.

    Runs in the ``ValidateRequest`` step, on the scikit-learn layer (model parameters are
    checked by scikit-learn), before ``Ingest``; Plan and PlanPredictions check the
    same request again with the data, as they do for every run.

    Parameters
    ----------
    event : dict
        ``{"request": <the execution input>, "kind": "train" | "predict" | "search"}``.

    Returns
    -------
    dict
        ``{"valid": True}``.

    Raises
    ------
    InvalidRequest
        For a training request, or its ``predict`` section, that Plan would refuse.
    InvalidPredictRequest
        For a prediction request that PlanPredictions would refuse.
    """
    kind = event.get("kind")
    request = event.get("request")
    if kind == "predict":
        parse_predict_request(request)
    elif kind == "search":
        # Here, not at the top, for ValidateRequest's cold start: tuning imports training
        # and the artifact (scikit-learn's trees), which only a search's input needs.
        from groveflow.tuning import parse_search

        if isinstance(request, dict) and request.get("run_id") is None:
            # SearchPlan names it after the execution (and checks that name); the rest now
            request = {**request, "run_id": "search"}
        parse_search(request)
    elif kind == "train":
        parse_train_request(request)
        if isinstance(request, dict) and request.get("predict") is not None:
            section = {**request["predict"], "model": "the-run-being-trained"}
            try:
                parse_predict_request(section)
            except GroveflowError as error:
                raise InvalidRequest(f"predict: {error}") from None
    else:
        raise InvalidRequest(f"kind={kind!r} is not a request kind: 'train', 'predict' or 'search'")
    return {"valid": True}


def ingest(
    event: dict[str, Any],
    *,
    bucket: str,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
) -> dict[str, Any]:
    """Ingest the CSV and Parquet a training or prediction input names; pass the input through.

    Reads ``data`` and, in a training input, ``predict.data`` when they name CSV or
    Parquet; ``sklearn:``, ``.npy`` and ``.npz`` sections are left to be read directly.

    Returns
    -------
    dict
        ``{"request": <the input, unchanged>, "converted": {"data": ..., "predict": ...}}``;
        each entry is ``{"uri", "format": "columns", "files"}`` (``files``: the parts).
    """
    request = event.get("request")
    name = str(event.get("execution_name", ""))
    # Execution names are unique per state machine only: a train and a predict execution
    # of one name must not share their parts.
    machine = str(event.get("state_machine") or "")
    converted: dict[str, Any] = {}
    if isinstance(request, dict):
        predict = request.get("predict")
        sections = {
            "data": request.get("data"),
            "predict": predict.get("data") if isinstance(predict, dict) else None,
        }
        for section, data in sections.items():
            if isinstance(data, dict) and isinstance(data.get("uri"), str):
                check_readable(data["uri"], (bucket, *data_buckets), local_paths, InvalidRequest)
            spec = _ingested_spec(data)
            if spec is not None:
                id_column = data.get("id_column") if isinstance(data, dict) else None
                text = (id_column,) if isinstance(id_column, str) else ()
                prefix = keys.converted(machine, name, section)
                converted[section] = _ingest_section(spec, bucket, prefix, text)
    return {"request": request, "converted": converted}

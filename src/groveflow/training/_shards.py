"""Row shards: a run's split stored in fixed-size pieces, for data no one function holds.

When a run's data went through Ingest (CSV, Parquet: ``.gfcols`` parts of at most 8 MiB)
and it does not fit the plan's memory whole, or its training split does not fit a
builder, or the request sets ``rows_per_grove``, the plan never holds the dataset. It
reads the parts one at a time, twice:

1. :func:`scan_parts`: each part's labels (kept as one class number per row), a digest
   of its rows, and its features checked as the in-memory reader checks them; a sample of
   every part's rows is kept for the trial grove. Then the split (:func:`~._split.test_mask`,
   the same rule as a run read whole, so both hold out the same rows) and every check,
   before anything is written.
2. :func:`write_shards`: each part's training and held-out rows are appended to row
   shards of ``shard_rows`` rows (``runs/<run>/data/train/shard-00000.npz``...,
   ``.../test/...``; each training shard's entry counts its rows of each class), the
   training labels streamed to ``y_train.npy`` (for the OOB scores) and, for
   classification, their class numbers to ``train_codes.npy`` (a record of the split).
   The shard document (``runs/<run>/data/shards.json``) is written last: a split exists
   once it does.

A grove reads the training shards (:func:`grove_data`): all of them, into one matrix
filled a shard at a time (the forest then equals the one a run read whole gives, byte for
byte), or, with ``rows_per_grove``, a seeded sample drawn across the whole training split
(stratified by class): how many rows of each class each shard gives is drawn from the
shards' class counts alone (:func:`_shard_draws`), then the rows within each shard as it
is read, so a builder holds its sample and one shard, whatever the split's size, and
reads only shards that give rows. The merge scores the held-out shards one at a time
(:func:`test_shards`).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groveflow import storage
from groveflow.datasets import (
    ColumnFiles,
    _feature_columns,
    _numeric_features,
    _target_array,
    check_classes,
    label_values,
    sources,
    to_features,
)
from groveflow.errors import ArtifactError, InvalidDataset
from groveflow.layout import keys
from groveflow.request import DataSpec

SHARD_MB = 16
"""A row shard's size (MiB of float32 features): what the plan buffers and a grove reads at once."""
TRIAL_ROWS = 20_000
"""Rows the scan keeps for the plan's trial grove: drawn from every part alike."""
SAMPLE_STREAM = 0x67726F76
"""Mixed into a grove's seed for the stream that draws its rows, apart from its trees'."""
MMAP_THRESHOLD_BYTES = 2**20
"""Allocations from this size up are their own mappings, returned to the system when freed."""

_HEAP_BOUND: list[bool] = []


def _bound_heap() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` (once per process).

    glibc raises the threshold to the size of each large block freed (up to 32 MiB), so after
    the first shard the next ones' arrays come from the heap, which keeps their pages when
    they are freed: reading and writing shards of 16 MiB, the plan's peak was 180 MB over
    the interpreter, 129 MB with the threshold fixed (benchmarks/scale.py's 512 MB table).
    A no-op where the C library is not glibc.
    """
    if _HEAP_BOUND:
        return
    _HEAP_BOUND.append(True)
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):
        name = ctypes.util.find_library("c")
        if name and "libc.so" in name:
            ctypes.CDLL(name).mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD


@dataclass
class Scan:
    """What the first pass over the parts found: enough to split and check, not the rows."""

    sources: list[str]
    feature_names: list[str]
    part_rows: list[int] = field(default_factory=list)
    codes: np.ndarray | None = None
    classes: np.ndarray | None = None
    sha256: str = ""
    trial_X: np.ndarray | None = None
    trial_y: np.ndarray | None = None
    trial_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    bytes_read: int = 0
    target_peak: float = 0.0
    """The largest magnitude of a regression target (0 for classification)."""

    @property
    def n_rows(self) -> int:
        return sum(self.part_rows)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


class RowsDigest:
    """The sha256 of a table's rows (float32 features, then labels), fed a block at a time:
    the same whether the rows come whole or a part at a time."""

    def __init__(self) -> None:
        self._x = hashlib.sha256()
        self._y = hashlib.sha256()
        self.rows = 0
        self.width = 0

    def update(self, X: np.ndarray, y: np.ndarray) -> None:
        self._x.update(np.ascontiguousarray(X, dtype=np.float32).data.cast("B"))
        if y.dtype.kind == "U":
            self._y.update("\0".join(y.tolist()).encode() + b"\0")
        else:
            self._y.update(np.ascontiguousarray(y).tobytes())
        self.rows += len(y)
        self.width = X.shape[1]

    def hexdigest(self) -> str:
        head = f"{self.rows}x{self.width}:".encode()
        return hashlib.sha256(head + self._x.digest() + self._y.digest()).hexdigest()


def _parts(uri: str) -> list[str]:
    return sources(uri)


def _read_part(
    source: str, scratch: Path, spec: DataSpec, task: str, names: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """One part's float32 features and labels (checked as a whole table's are), its feature
    names, and its size in bytes."""
    path = scratch / "part.gfcols"
    if source.startswith("s3://"):
        storage.download(source, path)
    else:
        path = Path(source)
    columns = ColumnFiles([path], [source])
    try:
        chosen = _feature_columns(columns, spec, spec.uri) if names is None else names
        if list(columns) and [c for c in chosen if c not in columns]:
            raise InvalidDataset(
                f"{columns.source_name(source)} has columns {list(columns)}; "
                "the first file has others"
            )
        assert spec.target is not None
        y = label_values(_target_array(columns[spec.target]), task)
        if len(y) == 0:
            return np.empty((0, len(chosen)), np.float32), y, chosen, path.stat().st_size
        X = to_features(_numeric_features(columns, chosen, source, InvalidDataset), chosen)
    finally:
        columns.close()
    return X, y, chosen, path.stat().st_size


def scan_parts(spec: DataSpec, task: str) -> Scan:
    """The first pass (see the module): labels, digest and checks, one part at a time."""
    _bound_heap()
    scan = Scan(sources=_parts(spec.uri), feature_names=[])
    digest = RowsDigest()
    labels: list[np.ndarray] = []  # each part's unique labels, then its class numbers
    per_part: list[np.ndarray] = []
    kinds: set[str] = set()
    trial: list[tuple[np.ndarray, np.ndarray]] = []
    trial_rows: list[np.ndarray] = []
    per_part_trial = max(1, TRIAL_ROWS // max(1, len(scan.sources)))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="groveflow-scan-") as scratch:
        names: list[str] | None = None
        for source in scan.sources:
            X, y, names, size = _read_part(source, Path(scratch), spec, task, names)
            scan.bytes_read += size
            scan.part_rows.append(len(y))
            if len(y) == 0:
                continue
            digest.update(X, y)
            if task == "classification":
                kinds.add("text" if y.dtype.kind == "U" else "number")
                unique, inverse = np.unique(y, return_inverse=True)
                labels.append(unique)
                per_part.append(inverse.astype(np.min_scalar_type(len(unique) - 1)))
            else:
                scan.target_peak = max(scan.target_peak, float(np.max(np.abs(y))))
            picks = np.sort(rng.choice(len(y), min(len(y), per_part_trial), replace=False))
            trial.append((X[picks], y[picks]))
            trial_rows.append(scan.n_rows - len(y) + picks)
            del X, y
        scan.feature_names = names or []
    if scan.n_rows == 0:
        raise InvalidDataset(f"the dataset has no rows: {spec.uri}")
    if len(kinds) > 1:
        raise InvalidDataset(
            f"the target column {spec.target!r} holds numbers in some parts of {spec.uri} and "
            "text in others: make it one kind"
        )
    scan.sha256 = digest.hexdigest()
    if task == "classification":
        scan.classes, scan.codes = _class_numbers(labels, per_part, scan.n_rows)
    scan.trial_X = np.concatenate([x for x, _ in trial])
    scan.trial_y = np.concatenate([y for _, y in trial])
    scan.trial_rows = np.concatenate(trial_rows)
    if scan.classes is not None:
        scan.trial_y = scan.trial_y.astype(scan.classes.dtype)
    return scan


def _class_numbers(
    labels: list[np.ndarray], per_part: list[np.ndarray], n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The classes of every part, checked, and each row's class number in part order."""
    classes = np.unique(np.concatenate(labels))
    if classes.size < 2:
        raise InvalidDataset(
            f"the target has a single class ({classes.tolist()[0]!r}): nothing to classify"
        )
    check_classes(classes, n_rows)
    codes = np.empty(n_rows, dtype=np.min_scalar_type(classes.size - 1))
    at = 0
    for unique, inverse in zip(labels, per_part, strict=True):
        codes[at : at + len(inverse)] = np.searchsorted(classes, unique)[inverse]
        at += len(inverse)
    return classes, codes


def shard_rows_for(n_features: int, shard_mb: float = SHARD_MB) -> int:
    """Rows of ``n_features`` float32 features in a shard of ``shard_mb`` MiB (at least 1,024)."""
    return max(1024, int(shard_mb * 2**20) // (4 * n_features))


class _ShardWriter:
    """Rows appended a part at a time, stored as shards of exactly ``shard_rows`` rows (the
    last holds the rest). With ``n_classes``, each shard's entry counts its rows of each
    class (``class_counts``), from the class numbers appended with the rows."""

    def __init__(
        self,
        bucket: str,
        shards: tuple[str, str],
        shard_rows: int,
        scratch: Path,
        n_classes: int = 0,
    ) -> None:
        self.bucket, self.scratch = bucket, scratch
        self.run_id, self.part = shards  # the shards' keys: keys.shard(run_id, part, n)
        self.shard_rows, self.n_classes = shard_rows, n_classes
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.buffered = 0
        self.written: list[dict[str, Any]] = []

    def add(self, X: np.ndarray, y: np.ndarray, codes: np.ndarray | None = None) -> None:
        if len(y):
            self.pending.append((X, y, codes))
            self.buffered += len(y)
        while self.buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> list[dict[str, Any]]:
        if self.buffered:
            self._flush(self.buffered)
        return self.written

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` pending rows as one shard, straight from the pieces
        (never joined in memory), and keep the rest."""
        taken: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        left = rows
        while left:
            X, y, codes = self.pending[0]
            if len(y) <= left:
                taken.append(self.pending.pop(0))
                left -= len(y)
            else:
                head = None if codes is None else codes[:left]
                taken.append((X[:left], y[:left], head))
                self.pending[0] = (X[left:], y[left:], None if codes is None else codes[left:])
                left = 0
        self.buffered -= rows
        key = keys.shard(self.run_id, self.part, len(self.written))
        path = self.scratch / "shard.npz"
        _write_npz(path, {"X": [x for x, _, _ in taken], "y": [y for _, y, _ in taken]})
        entry: dict[str, Any] = {"key": key, "rows": rows}
        if self.n_classes:
            counts = np.zeros(self.n_classes, dtype=np.int64)
            for _, _, codes in taken:
                assert codes is not None  # given with every row when n_classes is
                counts += np.bincount(codes, minlength=self.n_classes)
            entry["class_counts"] = [int(n) for n in counts]
        del taken
        storage.put_file(self.bucket, key, path)
        self.written.append({**entry, "bytes": path.stat().st_size})
        path.unlink()


def _write_npz(path: Path, members: dict[str, list[np.ndarray]]) -> None:
    """An uncompressed ``.npz`` whose each member is its blocks' rows stacked, written a
    block at a time (what ``np.savez`` of the stacked arrays writes, without stacking)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, blocks in members.items():
            first = blocks[0]
            shape = (sum(len(b) for b in blocks), *first.shape[1:])
            header = {
                "descr": np.lib.format.dtype_to_descr(first.dtype),
                "fortran_order": False,
                "shape": shape,
            }
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                for block in blocks:
                    handle.write(np.ascontiguousarray(block, dtype=first.dtype).data)


class _NpyStream:
    """A 1-D ``.npy`` file written a block at a time (its length known up front)."""

    def __init__(self, path: Path, length: int, dtype: np.dtype) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self._file = path.open("wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self._file, {**header, "shape": (length,)})

    def write(self, values: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self._file.close()


def write_shards(
    bucket: str,
    run_id: str,
    spec: DataSpec,
    scan: Scan,
    test: np.ndarray,
    *,
    task: str,
    shard_rows: int,
    rows_per_grove: int | None,
) -> dict[str, Any]:
    """The second pass (see the module): every part's rows into train and test shards, the
    training labels beside them, the shard document last. Returns the document."""
    n_train = int(len(test) - test.sum())
    label_dtype = scan.classes.dtype if scan.classes is not None else np.dtype(np.float64)
    with tempfile.TemporaryDirectory(prefix="groveflow-shards-") as directory:
        scratch = Path(directory)
        n_classes = 0 if scan.classes is None else len(scan.classes)
        train = _ShardWriter(bucket, (run_id, "train"), shard_rows, scratch, n_classes)
        held = _ShardWriter(bucket, (run_id, "test"), shard_rows, scratch)
        y_train = _NpyStream(scratch / "y_train.npy", n_train, label_dtype)
        codes = (
            None
            if scan.codes is None
            else _NpyStream(scratch / "train_codes.npy", n_train, scan.codes.dtype)
        )
        at = 0
        for source, rows in zip(scan.sources, scan.part_rows, strict=True):
            if rows == 0:
                continue
            X, y, _, _ = _read_part(source, scratch, spec, task, scan.feature_names)
            y = y.astype(label_dtype)
            held_out = test[at : at + rows]
            keep = ~held_out
            part_codes = None if scan.codes is None else scan.codes[at : at + rows][keep]
            train.add(X[keep], y[keep], part_codes)
            held.add(X[held_out], y[held_out])
            y_train.write(y[keep])
            if codes is not None:
                assert scan.codes is not None
                codes.write(scan.codes[at : at + rows][keep])
            at += rows
            del X, y
        train_shards, test_shards = train.close(), held.close()
        y_train.close()
        storage.put_file(bucket, keys.split(run_id, "y_train"), y_train.path)
        if codes is not None:
            codes.close()
            storage.put_file(bucket, keys.split(run_id, "train_codes"), codes.path)
    document = {
        "n_train": n_train,
        "n_test": int(test.sum()),
        "n_features": scan.n_features,
        "shard_rows": shard_rows,
        "rows_per_grove": rows_per_grove,
        "train": train_shards,
        "test": test_shards,
    }
    storage.put_json(bucket, shards_key(run_id), document)
    return document


shards_key = keys.shards
"""The shard document of a run whose split is in row shards (:meth:`keys.shards`)."""


def read_document(bucket: str, run_id: str) -> dict[str, Any]:
    """A run's shard document, checked."""
    document = storage.get_json(bucket, shards_key(run_id))
    if not isinstance(document, dict) or not all(
        isinstance(document.get(name), list) for name in ("train", "test")
    ):
        raise ArtifactError(f"{shards_key(run_id)} is not a shard document")
    return dict(document)


def _read_shard(bucket: str, entry: dict[str, Any], scratch: Path) -> tuple[np.ndarray, np.ndarray]:
    path = scratch / "shard.npz"
    storage.download(f"s3://{bucket}/{entry['key']}", path)
    with np.load(path, allow_pickle=False) as archive:
        X, y = archive["X"], archive["y"]
    path.unlink()
    if len(y) != entry["rows"] or len(X) != len(y):
        raise ArtifactError(
            f"{entry['key']} holds {len(y)} rows; its document says {entry['rows']}"
        )
    return X, y


def _shard_draws(
    document: dict[str, Any], rows: int, seed: int
) -> tuple[np.random.Generator, np.ndarray]:
    """How many of a grove's ``rows`` each training shard gives of each class: a shards x
    classes matrix. The rows are shared among the classes in proportion (``allocate``),
    then each class's among the shards as a draw without replacement from all its rows
    (``multivariate_hypergeometric`` over the shards' class counts): the counts a uniform
    sample of the class's rows would have. Also the generator the picks go on with."""
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    entries = document["train"]
    if all("class_counts" in e for e in entries):
        counts = np.array([e["class_counts"] for e in entries], dtype=np.int64)
    else:  # regression: one "class"
        counts = np.array([[int(e["rows"])] for e in entries], dtype=np.int64)
    per_class = allocate(counts.sum(axis=0), rows, keep=0)
    draws = np.zeros_like(counts)
    for number, take in enumerate(per_class):
        draws[:, number] = rng.multivariate_hypergeometric(counts[:, number], int(take))
    return rng, draws


def _picks(
    rng: np.random.Generator, codes: np.ndarray | None, draws: np.ndarray, n_rows: int
) -> np.ndarray:
    """The rows of one shard of ``n_rows`` a grove keeps (sorted): ``draws[c]`` of its class
    ``c`` rows, drawn without replacement (``codes``: the rows' class numbers; None: one)."""
    chosen = []
    for number, take in enumerate(draws):
        if take:
            members = np.arange(n_rows) if codes is None else np.flatnonzero(codes == number)
            chosen.append(members[rng.choice(len(members), int(take), replace=False)])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def sample_rows(
    document: dict[str, Any], rows: int, seed: int, shard_codes: list[np.ndarray]
) -> np.ndarray:
    """The training rows (global, sorted) a grove of ``seed`` fits on: what :func:`grove_data`
    keeps, from each shard's rows' class numbers (``shard_codes``) instead of the shards."""
    rng, draws = _shard_draws(document, rows, seed)
    out, start = [], 0
    for entry, codes, draw in zip(document["train"], shard_codes, draws, strict=True):
        if draw.sum():
            known = codes if "class_counts" in entry else None
            out.append(start + _picks(rng, known, draw, int(entry["rows"])))
        start += int(entry["rows"])
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def grove_data(
    bucket: str,
    source: str,
    document: dict[str, Any],
    seed: int,
    label_dtype: np.dtype,
    *,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """A grove's training rows from the row shards of run ``source`` (see the module), and
    how it saw them: ``{"rows", "shards", "bytes_read"}``. A sample (``rows_per_grove``)
    is drawn shard by shard (:func:`_shard_draws`): a builder holds its rows and one shard,
    whatever the size of the training split."""
    _bound_heap()
    n_train, n_features = int(document["n_train"]), int(document["n_features"])
    rows_per_grove = document.get("rows_per_grove")
    entries = document["train"]
    draws = None
    if rows_per_grove is None:
        size = n_train
    else:
        rng, draws = _shard_draws(document, int(rows_per_grove), seed)
        size = int(draws.sum())
    X = np.empty((size, n_features), dtype=np.float32)
    y = np.empty(size, dtype=label_dtype)
    filled = read = bytes_read = 0
    with tempfile.TemporaryDirectory(prefix="groveflow-grove-") as scratch:
        for number, entry in enumerate(entries):
            if draws is not None and not draws[number].sum():
                continue
            Xs, ys = _read_shard(bucket, entry, Path(scratch))
            read += 1
            bytes_read += int(entry.get("bytes", Xs.nbytes + ys.nbytes))
            if draws is not None:
                codes = None
                if "class_counts" in entry:
                    assert classes is not None
                    codes = np.searchsorted(classes, ys)
                picks = _picks(rng, codes, draws[number], len(ys))
                Xs, ys = Xs[picks], ys[picks]
            X[filled : filled + len(ys)] = Xs
            y[filled : filled + len(ys)] = ys
            filled += len(ys)
            del Xs, ys
    if filled != size:
        raise ArtifactError(f"the training shards hold {filled} of the {size} rows they should")
    return X, y, {"rows": size, "shards": read, "bytes_read": bytes_read}


def test_shards(bucket: str, document: dict[str, Any]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The held-out rows, a shard at a time."""
    _bound_heap()
    with tempfile.TemporaryDirectory(prefix="groveflow-test-") as scratch:
        for entry in document["test"]:
            yield _read_shard(bucket, entry, Path(scratch))


def allocate(counts: np.ndarray, total: int, keep: int) -> np.ndarray:
    """``total`` rows shared among classes of ``counts`` rows: one each, the rest in
    proportion to the classes' sizes (largest remainders first), none given more than
    leaves it ``keep`` rows; the shares add up to ``total`` exactly (the caller checks
    ``len(counts) <= total <= sum(counts - keep)``)."""
    counts = np.asarray(counts, dtype=np.int64)
    take = np.ones(len(counts), dtype=np.int64)
    room = counts - keep - 1
    left = int(total) - len(counts)
    while left > 0:
        open_ = room > 0
        exact = left * np.where(open_, counts, 0) / counts[open_].sum()
        add = np.minimum(np.floor(exact).astype(np.int64), room)
        if add.sum() == 0:  # a row each to the largest remainders among the open classes
            order = np.argsort(-np.where(open_, exact, -1.0), kind="stable")[:left]
            add = np.zeros_like(take)
            add[order[open_[order]]] = 1
        take += add
        room -= add
        left -= int(add.sum())
    return take

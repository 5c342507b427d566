"""The sealed container: one pickle-free format for groves and merged forests.

A blob holds the trees of one grove or one whole forest as flat arrays plus a JSON header.
Nothing in it is ever unpickled: every array is read with :func:`numpy.frombuffer` from an
allow-list of plain little-endian dtypes, after the whole blob has been checked.

File layout (all integers little-endian)::

    offset 0   8 bytes   magic b"\\x93GFOREST"
    offset 8   32 bytes  sha256 of every byte from offset 40 to the end
    offset 40  4 bytes   uint32 header length H (at most 1 MiB)
    offset 44  H bytes   ASCII JSON header (sorted keys, no spaces)
    then       zero padding to a multiple of 8 bytes: the data section starts here
    then       the arrays, in header order, each 8-byte aligned, zero padding between them

This is not an ``np.savez`` zip on purpose: a zip embeds timestamps, and reading it through
:mod:`zipfile` copies and CRC-checks every entry, whereas these arrays are used in place (zero
copy) once their bounds are checked, which is what makes loading cheap.

The header names the task, the counts (``n_trees``, ``n_nodes``, ``n_splits``, ``n_leaves``,
``n_features``, ``n_values``) and, for every array, its ``name``, ``dtype``, ``shape`` and
``offset`` (relative to the data section). Nodes keep scikit-learn's numbering inside each tree and
the trees are concatenated. Split nodes (internal nodes) and leaves are stored apart, each in node
order, so a leaf carries no split fields and a split carries no values:

- ``tree_node_count``, ``tree_max_depth``: one entry per tree.
- ``node_is_leaf``: one bit per node (:func:`numpy.packbits`).
- ``split_left``, ``split_right``: child index minus the split's own index (always >= 1, which is
  what scikit-learn's builders guarantee and what rules out cycles).
- ``split_feature``, ``split_threshold`` (float32, see below), ``split_missing_left`` (one bit per
  split), ``split_impurity``, ``split_weight`` (``weighted_n_node_samples``).
- ``leaf_value`` (``n_leaves x n_values``; class fractions or the regression value),
  ``leaf_impurity``, ``leaf_weight``.
- ``classes`` for classification, with its own dtype (numbers or unicode strings).

Integer columns use the narrowest unsigned dtype that holds them. Any column is stored either as
is or, when that is smaller, as a table of its distinct rows (``<name>.table``, compared bit for
bit) plus ``<name>.index``; a one-row table has no index (e.g. ``split_left`` is always 1 in
depth-first trees). A forest's leaf values are typically a handful of distinct rows. The encoding
is a pure function of the trees, so the same trees always give byte-identical blobs, whichever
way they were assembled (one forest, or groves merged with :meth:`Forest.concat`).

Exactness. scikit-learn casts X to float32 and tests ``x <= threshold`` against a float64
threshold. A threshold is stored as the largest float32 that is <= the float64 one (the cast,
stepped down with :func:`numpy.nextafter` where it rounded up), which leaves ``x <= t`` unchanged
for every float32 ``x``. NaN is routed by the stored ``missing_go_to_left`` bit, as scikit-learn
does. Predictions go through genuine ``sklearn.tree._tree.Tree`` objects rebuilt from the validated
arrays on first use, accumulated tree by tree exactly as scikit-learn's forests do.

Not stored: ``n_node_samples`` (neither prediction nor importances use it; rebuilt trees carry
``weighted_n_node_samples`` rounded to an integer in its place) and the values of split nodes
(only leaves are ever predicted from; rebuilt trees hold zeros there, which matters only to tools
that inspect internal nodes such as ``plot_tree``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.tree import BaseDecisionTree
from sklearn.tree._tree import NODE_DTYPE

from groveflow.artifact._codec import (
    _FLOAT_COLUMNS,
    _INT_COLUMNS,
    _PACKED_BITS,
    _UNSIGNED,
    _bounded,
    _column,
    _Columns,
    _concat_columns,
    _encode_columns,
    _Meta,
    _tree_columns,
)
from groveflow.artifact._forest import Forest
from groveflow.documents import FORMAT_VERSION
from groveflow.errors import ArtifactError

_FORMAT_NAME = "groveflow.forest"
_MAGIC = b"\x93GFOREST"
_PREFIX = struct.Struct("<8s32sI")
_MAX_HEADER_BYTES = 1 << 20
_BACKGROUND_HASH_BYTES = 1 << 20
_MAX_GROWTH = 2048  # rebuilt trees may take this many times their artifact's size ...
_MIN_REBUILD_LIMIT = (
    1 << 30
)  # ... or 1 GiB, whichever is larger  # smaller blobs are hashed inline: a thread costs ~0.1 ms
_ALIGN = 8
_TASKS = ("classification", "regression")

# Only these dtype strings are ever turned into numpy dtypes: plain numbers and unicode.
_DTYPE_PATTERN = re.compile(r"^(\|u1|<u[248]|\|i1|<i[248]|<f[48]|\|b1|<U[1-9][0-9]{0,3})$")


# --------------------------------------------------------------------------- encoding


def encode_trees(
    trees: Sequence[BaseDecisionTree], *, n_features: int, classes: np.ndarray | None
) -> bytes:
    """Serialize fitted scikit-learn trees (one grove or a whole forest) into one blob.

    Parameters
    ----------
    trees : sequence of fitted DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier
        or ExtraTreeRegressor
        The trees, e.g. a forest's ``estimators_``; all classifiers or all regressors, with one
        output.
    n_features : int
        Number of features the trees were fitted on.
    classes : ndarray of shape (n_classes,) or None
        The forest's ``classes_`` (numbers or strings) for classifiers; None for regressors.

    Returns
    -------
    bytes
        The artifact; the same trees always give the same bytes.

    Raises
    ------
    ArtifactError
        If the trees cannot be stored (unfitted, multi-output, not matching ``n_features`` or
        ``classes``, classes of an unsupported dtype).
    """
    return encode_forest_file(_forest_from_trees(trees, n_features=n_features, classes=classes))


def encode_forest_file(forest: Forest) -> bytes:
    """Serialize a :class:`Forest` (e.g. merged groves) into one blob.

    Parameters
    ----------
    forest : Forest
        The forest to write.

    Returns
    -------
    bytes
        The artifact, byte-identical to ``encode_trees`` of the same trees.
    """
    meta = forest._meta
    header: dict[str, Any] = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "task": meta.task,
        "n_features": meta.n_features,
        "n_values": meta.n_values,
        "n_trees": meta.n_trees,
        "n_nodes": meta.n_nodes,
        "n_splits": meta.n_splits,
        "n_leaves": meta.n_leaves,
    }
    arrays = dict(forest._stored)
    if forest.classes_ is not None:
        arrays["classes"] = forest.classes_
    return _seal(header, arrays)


def _seal(header: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    entries = []
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        entries.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        )
        data = array.tobytes()
        padding = -len(data) % _ALIGN
        chunks.append(data + b"\0" * padding)
        offset += len(data) + padding
    text = json.dumps({**header, "arrays": entries}, sort_keys=True, separators=(",", ":"))
    header_bytes = text.encode("ascii")
    start = _PREFIX.size + len(header_bytes)
    body = (
        struct.pack("<I", len(header_bytes))
        + header_bytes
        + b"\0" * (-start % _ALIGN)
        + b"".join(chunks)
    )
    return _MAGIC + hashlib.sha256(body).digest() + body


def _forest_from_trees(
    trees: Sequence[BaseDecisionTree], *, n_features: int, classes: np.ndarray | None
) -> Forest:
    if len(trees) == 0:
        raise ArtifactError("cannot encode an empty list of trees")
    stored_classes = None if classes is None else _storable_classes(classes)
    task = "regression" if stored_classes is None else "classification"
    n_values = 1 if stored_classes is None else len(stored_classes)
    for position, tree in enumerate(trees):
        _check_tree(tree, position, task=task, n_features=n_features, n_values=n_values)
    columns = _concat_columns([_tree_columns(tree.tree_) for tree in trees])
    return _forest_from_columns(task, n_features, n_values, stored_classes, columns)


def _storable_classes(classes: Any) -> np.ndarray:
    array = np.asarray(classes)
    if array.dtype == object and all(isinstance(label, str) for label in array.ravel()):
        array = array.astype(str)
    if array.ndim != 1 or len(array) == 0:
        raise ArtifactError(f"classes must be a non-empty 1-d array, got shape {array.shape}")
    if array.dtype.kind not in "biufU":
        raise ArtifactError(
            f"classes of dtype {array.dtype} cannot be stored; use numbers or unicode strings"
        )
    if len(np.unique(array)) != len(array):
        raise ArtifactError(f"classes must be distinct, got {array!r}")
    return array.astype(array.dtype.newbyteorder("<"))


def _check_tree(tree: Any, position: int, *, task: str, n_features: int, n_values: int) -> None:
    if not isinstance(tree, BaseDecisionTree) or not hasattr(tree, "tree_"):
        raise ArtifactError(
            f"trees[{position}] is {type(tree).__name__}; expected a fitted scikit-learn "
            "decision tree (DecisionTree*/ExtraTree*)"
        )
    if (task == "classification") != is_classifier(tree):
        raise ArtifactError(
            f"trees[{position}] is a {type(tree).__name__}, which does not fit a {task} "
            "artifact (pass classes for classifiers, classes=None for regressors)"
        )
    raw = tree.tree_
    if raw.n_outputs != 1:
        raise ArtifactError(f"trees[{position}] has {raw.n_outputs} outputs; only 1 is supported")
    if raw.n_features != n_features:
        raise ArtifactError(
            f"trees[{position}] was fitted on {raw.n_features} features, "
            f"not n_features={n_features}"
        )
    if raw.max_n_classes != n_values:
        raise ArtifactError(
            f"trees[{position}] predicts {raw.max_n_classes} values per sample, but "
            f"{n_values} were expected from classes"
        )


def _forest_from_columns(
    task: str, n_features: int, n_values: int, classes: np.ndarray | None, columns: _Columns
) -> Forest:
    n_leaves = int(columns.node_is_leaf.sum())
    meta = _Meta(
        task=task,
        n_features=n_features,
        n_values=n_values,
        n_trees=len(columns.tree_node_count),
        n_nodes=len(columns.node_is_leaf),
        n_splits=len(columns.node_is_leaf) - n_leaves,
        n_leaves=n_leaves,
    )
    return Forest(meta, classes, _encode_columns(columns))


# --------------------------------------------------------------------------- decoding


def decode_trees(blob: bytes) -> Forest:
    """Read and fully validate an artifact written by :func:`encode_trees`.

    Every check runs before any array is used: the sha256, the header's schema, each array's
    dtype, shape and bounds, every child index (inside its tree and greater than its parent's),
    every feature index (below ``n_features``) and every table index.

    Parameters
    ----------
    blob : bytes
        The artifact.

    Returns
    -------
    Forest
        The validated forest.

    Raises
    ------
    ArtifactError
        If the blob is truncated, corrupted, of another format version, or inconsistent; the
        message says which check failed.
    """
    return _decode(blob, verify_checksum=True)


def _decode(blob: bytes, *, verify_checksum: bool) -> Forest:
    """Validate and wrap a blob; ``verify_checksum=False`` only after hashing the whole blob."""
    if not isinstance(blob, bytes):
        blob = bytes(blob)  # the forest keeps views of the blob: it must not change under it
    view = memoryview(blob).cast("B")
    if len(view) < _PREFIX.size:
        raise ArtifactError(
            f"artifact is {len(view)} bytes, shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, digest, _ = _PREFIX.unpack_from(view)
    if magic != _MAGIC:
        raise ArtifactError(f"not a groveflow forest artifact (magic {bytes(magic)!r})")
    # The checksum is computed on another core while the structure is checked: the checks are
    # written for hostile input anyway, and a mismatch wins over whatever they found.
    if not verify_checksum:
        content_digest: Callable[[], bytes] = lambda: digest  # noqa: E731
    elif len(view) < _BACKGROUND_HASH_BYTES:
        content_digest = hashlib.sha256(view[40:]).digest
    else:
        content_digest = _sha256_in_background(view[40:])
    try:
        forest = _validated_forest(view)
    except ArtifactError:
        _check_digest(content_digest(), digest)
        raise
    _check_digest(content_digest(), digest)
    return forest


def _sha256_in_background(data: memoryview) -> Callable[[], bytes]:
    """Start hashing ``data`` (hashlib releases the GIL); the returned call waits for the digest."""
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(hashlib.sha256(data).digest()))
    worker.start()

    def digest() -> bytes:
        worker.join()
        return result[0]

    return digest


def _check_digest(actual: bytes, expected: bytes) -> None:
    if actual != expected:
        raise ArtifactError("artifact checksum mismatch: the sha256 of its content is wrong")


def _validated_forest(view: memoryview) -> Forest:
    header, data_start = _read_header(view)
    meta = _read_meta(header)
    arrays = _read_arrays(view, header, data_start)
    classes = _check_classes(meta, arrays.pop("classes", None))
    _check_array_names(meta, arrays)
    _check_rebuild_size(meta, len(view))
    _check_structure(meta, arrays)
    return Forest(meta, classes, arrays)


def _read_header(view: memoryview) -> tuple[dict[str, Any], int]:
    (header_length,) = struct.unpack_from("<I", view, 40)
    if header_length > min(_MAX_HEADER_BYTES, len(view) - _PREFIX.size):
        raise ArtifactError(f"header length {header_length} exceeds the artifact or 1 MiB")
    try:
        header = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + header_length]))
    except (ValueError, RecursionError) as error:
        raise ArtifactError(f"artifact header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"artifact header must be a JSON object, got {type(header).__name__}")
    start = _PREFIX.size + header_length
    return header, start + (-start % _ALIGN)


def _read_meta(header: dict[str, Any]) -> _Meta:
    if header.get("format") != _FORMAT_NAME:
        raise ArtifactError(f"header format is {header.get('format')!r}, not {_FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"format_version {header.get('format_version')!r} is not supported "
            f"(this groveflow reads version {FORMAT_VERSION})"
        )
    task = header.get("task")
    if task not in _TASKS:
        raise ArtifactError(f"header task {task!r} is not one of {_TASKS}")
    counts = {
        name: _header_int(header, name, minimum)
        for name, minimum in (
            ("n_features", 1),
            ("n_values", 1),
            ("n_trees", 1),
            ("n_nodes", 1),
            ("n_splits", 0),
            ("n_leaves", 1),
        )
    }
    meta = _Meta(task=task, **counts)
    if (
        meta.n_nodes != meta.n_splits + meta.n_leaves
        or meta.n_leaves != meta.n_splits + meta.n_trees
    ):
        raise ArtifactError(
            f"header counts are inconsistent: n_nodes={meta.n_nodes}, n_splits={meta.n_splits}, "
            f"n_leaves={meta.n_leaves}, n_trees={meta.n_trees} (binary trees need "
            "n_nodes = n_splits + n_leaves and n_leaves = n_splits + n_trees)"
        )
    if task == "regression" and meta.n_values != 1:
        raise ArtifactError(f"a regression artifact has n_values=1, not {meta.n_values}")
    return meta


def _header_int(header: dict[str, Any], name: str, minimum: int) -> int:
    value = header.get(name)
    if type(value) is not int or not minimum <= value < 2**40:
        raise ArtifactError(f"header {name}={value!r} must be an integer in [{minimum}, 2**40)")
    return value


def _read_arrays(
    view: memoryview, header: dict[str, Any], data_start: int
) -> dict[str, np.ndarray]:
    entries = header.get("arrays")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ArtifactError("header arrays must be a list of objects")
    arrays: dict[str, np.ndarray] = {}
    end = data_start
    for entry in entries:
        name, dtype, shape, offset = _array_entry(entry)
        if name in arrays:
            raise ArtifactError(f"array {name!r} is listed twice")
        start = data_start + offset
        n_bytes = math.prod(shape) * dtype.itemsize
        if start < end or start + n_bytes > len(view):
            raise ArtifactError(
                f"array {name!r} ({n_bytes} bytes at offset {offset}) overlaps another array "
                f"or runs past the end of the {len(view)}-byte artifact"
            )
        arrays[name] = np.frombuffer(
            view, dtype=dtype, count=n_bytes // dtype.itemsize, offset=start
        ).reshape(shape)
        end = start + n_bytes
    return arrays


def _array_entry(entry: dict[str, Any]) -> tuple[str, np.dtype, tuple[int, ...], int]:
    name, dtype, shape, offset = (entry.get(key) for key in ("name", "dtype", "shape", "offset"))
    if not isinstance(name, str) or len(name) > 64:
        raise ArtifactError(f"array name {name!r} must be a short string")
    if not isinstance(dtype, str) or not _DTYPE_PATTERN.match(dtype):
        raise ArtifactError(f"array {name!r} has dtype {dtype!r}, which is not allowed")
    valid_shape = (
        isinstance(shape, list)
        and len(shape) <= 2
        and all(type(size) is int and 0 <= size < 2**40 for size in shape)
    )
    if not valid_shape:
        raise ArtifactError(f"array {name!r} has shape {shape!r}; expected up to 2 sizes >= 0")
    if type(offset) is not int or offset < 0 or offset % _ALIGN:
        raise ArtifactError(f"array {name!r} has offset {offset!r}; expected a multiple of 8")
    return name, np.dtype(dtype), tuple(shape or ()), offset


def _check_classes(meta: _Meta, classes: np.ndarray | None) -> np.ndarray | None:
    if meta.task == "regression":
        if classes is not None:
            raise ArtifactError("a regression artifact must not hold classes")
        return None
    if classes is None or classes.shape != (meta.n_values,) or classes.dtype.kind not in "biufU":
        raise ArtifactError(
            f"classes must be a 1-d array of {meta.n_values} numbers or strings, got "
            f"{None if classes is None else (classes.dtype.str, classes.shape)}"
        )
    if classes.dtype.kind == "U":
        code_points = classes.view("<u4")
        if np.any((code_points >= 0x110000) | ((code_points >= 0xD800) & (code_points < 0xE000))):
            raise ArtifactError("classes hold invalid unicode code points")
    if len(np.unique(classes)) != len(classes):
        raise ArtifactError("classes must be distinct")
    return classes


def _expected_arrays(meta: _Meta) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """Allowed dtypes and exact shape of each logical column, given the header's counts."""
    rows = {"tree": meta.n_trees, "split": meta.n_splits, "leaf": meta.n_leaves}
    expected: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
        "node_is_leaf": (("|u1",), (-(-meta.n_nodes // 8),)),
        "split_missing_left": (("|u1",), (-(-meta.n_splits // 8),)),
    }
    for name, per in _INT_COLUMNS.items():
        expected[name] = (_UNSIGNED, (rows[per],))
    for name, dtype in _FLOAT_COLUMNS.items():
        count = rows[name.split("_")[0]]
        expected[name] = ((dtype,), (count, meta.n_values) if name == "leaf_value" else (count,))
    return expected


def _check_array_names(meta: _Meta, arrays: dict[str, np.ndarray]) -> None:
    seen = set()
    for name, (dtypes, shape) in _expected_arrays(meta).items():
        if name in arrays:
            _check_array(name, arrays[name], dtypes, shape)
            seen.add(name)
        elif name not in _PACKED_BITS and f"{name}.table" in arrays:
            seen.update(_check_table(name, arrays, dtypes, shape))
        else:
            raise ArtifactError(f"artifact lacks array {name!r}")
    unknown = sorted(set(arrays) - seen)
    if unknown:
        raise ArtifactError(f"artifact holds unexpected arrays {unknown}")


def _check_table(
    name: str, arrays: dict[str, np.ndarray], dtypes: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[str, ...]:
    """Check a column stored as a table (plus an index unless the table has one row)."""
    table = arrays[f"{name}.table"]
    if table.ndim != len(shape) or table.shape[0] < 1:
        raise ArtifactError(f"{name}.table has shape {table.shape}; expected {len(shape)}-d rows")
    _check_array(f"{name}.table", table, dtypes, (len(table), *shape[1:]))
    index = arrays.get(f"{name}.index")
    if index is None:
        if len(table) != 1:
            raise ArtifactError(f"{name}.table has {len(table)} rows but no {name}.index")
        return (f"{name}.table",)
    _check_array(f"{name}.index", index, _UNSIGNED, shape[:1])
    if len(index) and int(index.max()) >= len(table):
        raise ArtifactError(
            f"{name}.index holds {int(index.max())}, outside its {len(table)}-row table"
        )
    return (f"{name}.table", f"{name}.index")


def _check_array(
    name: str, array: np.ndarray, dtypes: tuple[str, ...], shape: tuple[int, ...]
) -> None:
    if array.dtype.str not in dtypes:
        raise ArtifactError(f"array {name!r} has dtype {array.dtype.str}; expected one of {dtypes}")
    if array.shape != shape:
        raise ArtifactError(f"array {name!r} has shape {array.shape}; expected {shape}")


def _check_rebuild_size(meta: _Meta, artifact_bytes: int) -> None:
    """Refuse headers whose trees would need far more memory than their artifact could hold.

    One-row tables let a small artifact declare many nodes and classes; rebuilding scikit-learn
    trees allocates ``n_nodes * (64 + 8 * n_values)`` bytes, and feature importances
    ``8 * n_trees * n_features``. Genuine forests stay well within ``_MAX_GROWTH`` times their
    artifact's size (about 12x for 5 classes, 1000x for some 1,500 classes).
    """
    needed = meta.n_nodes * (NODE_DTYPE.itemsize + 8 * meta.n_values)
    needed += 8 * meta.n_trees * meta.n_features
    if needed > max(_MIN_REBUILD_LIMIT, _MAX_GROWTH * artifact_bytes):
        raise ArtifactError(
            f"the header declares trees needing {needed:,} bytes in memory "
            f"(n_nodes={meta.n_nodes}, n_values={meta.n_values}, n_features={meta.n_features}), "
            f"more than {_MAX_GROWTH}x this {artifact_bytes:,}-byte artifact"
        )


def _check_structure(meta: _Meta, arrays: dict[str, np.ndarray]) -> None:
    counts = _column(arrays, "tree_node_count", 0, meta.n_trees)
    node_count = _bounded("tree_node_count", counts, meta.n_nodes + 1)
    if np.any(node_count < 1) or int(node_count.sum()) != meta.n_nodes:
        raise ArtifactError(
            f"tree node counts must be >= 1 and sum to n_nodes={meta.n_nodes}, "
            f"got a sum of {int(node_count.sum())}"
        )
    depths = _column(arrays, "tree_max_depth", 0, meta.n_trees)
    if np.any(_bounded("tree_max_depth", depths, meta.n_nodes) >= node_count):
        raise ArtifactError("a tree's max_depth must be smaller than its node count")
    is_leaf = np.unpackbits(arrays["node_is_leaf"], count=meta.n_nodes).view(bool)
    split_node = np.flatnonzero(~is_leaf)
    node_end = np.cumsum(node_count)
    # A binary tree of n nodes has (n - 1) / 2 splits: the rest of the code relies on it.
    splits_per_tree = np.diff(np.searchsorted(split_node, node_end), prepend=0)
    if np.any(node_count != 2 * splits_per_tree + 1):
        raise ArtifactError("every tree must have exactly one more leaf than splits")
    tree_end = np.repeat(node_end, splits_per_tree)
    for side in ("split_left", "split_right"):
        delta = _bounded(side, _column(arrays, side, 0, meta.n_splits), meta.n_nodes)
        if len(delta) and (delta.min() < 1 or np.any(split_node + delta >= tree_end)):
            raise ArtifactError(
                f"{side} holds a child index outside its tree or not after its parent"
            )
    _bounded("split_feature", _column(arrays, "split_feature", 0, meta.n_splits), meta.n_features)

"""The column codec: scikit-learn trees as flat columns, and stored columns back as trees.

See :mod:`groveflow.artifact._container` for the layout these columns are stored in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.tree._tree import NODE_DTYPE, Tree

from groveflow.errors import ArtifactError

_TREE_LEAF = -1
_TREE_UNDEFINED = -2
_UNSIGNED = ("|u1", "<u2", "<u4", "<u8")
_PACKED_BITS = ("node_is_leaf", "split_missing_left")
# Each stored column: its dtype(s) and whether it has one entry per tree, split or leaf.
_INT_COLUMNS = {
    "tree_node_count": "tree",
    "tree_max_depth": "tree",
    "split_left": "split",
    "split_right": "split",
    "split_feature": "split",
}
_FLOAT_COLUMNS = {
    "split_threshold": "<f4",
    "split_impurity": "<f8",
    "split_weight": "<f8",
    "leaf_value": "<f8",
    "leaf_impurity": "<f8",
    "leaf_weight": "<f8",
}

if TYPE_CHECKING:
    from groveflow.artifact._forest import Forest


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class _Meta:
    """What the header says about a forest, besides where its arrays are."""

    task: str
    n_features: int
    n_values: int
    n_trees: int
    n_nodes: int
    n_splits: int
    n_leaves: int


@dataclass(frozen=True)
class _Columns:
    """The logical (decoded) columns of a forest, as described in the module docstring."""

    tree_node_count: np.ndarray
    tree_max_depth: np.ndarray
    node_is_leaf: np.ndarray
    split_left: np.ndarray
    split_right: np.ndarray
    split_feature: np.ndarray
    split_missing_left: np.ndarray
    split_threshold: np.ndarray
    split_impurity: np.ndarray
    split_weight: np.ndarray
    leaf_value: np.ndarray
    leaf_impurity: np.ndarray
    leaf_weight: np.ndarray


def _concat_stored(parts: Sequence[Forest]) -> dict[str, np.ndarray]:
    """The stored arrays of ``parts``' trees one after the other, as :func:`_encode_columns`
    would store their concatenated columns (the same bytes), mostly without decoding them:
    a column every part stores as a table is merged table by table and re-indexed."""
    stored: dict[str, np.ndarray] = {}
    for name, count in (("node_is_leaf", "n_nodes"), ("split_missing_left", "n_splits")):
        bits = [np.unpackbits(p._stored[name], count=getattr(p._meta, count)) for p in parts]
        stored[name] = np.packbits(np.concatenate(bits))
    for name, per in _INT_COLUMNS.items():
        stored.update(_concat_column(name, per, None, parts))
    for name, dtype in _FLOAT_COLUMNS.items():
        stored.update(_concat_column(name, name.split("_")[0], np.dtype(dtype), parts))
    return stored


def _concat_column(
    name: str, per: str, dtype: np.dtype | None, parts: Sequence[Forest]
) -> dict[str, np.ndarray]:
    """One column of :func:`_concat_stored`; ``dtype`` None for integer columns, which are
    stored in the narrowest unsigned type that holds them."""
    counts = [_rows_per(part._meta, per) for part in parts]
    if not all(f"{name}.table" in part._stored for part in parts):
        pieces = [_column(p._stored, name, 0, n) for p, n in zip(parts, counts, strict=True)]
        if dtype is None:
            values = _narrowest_unsigned(np.concatenate([p.astype(np.int64) for p in pieces]))
        else:
            values = np.concatenate(pieces).astype(dtype)
        return _table_or_raw(name, values)
    tables = [part._stored[f"{name}.table"] for part in parts]
    if dtype is None:
        table = _narrowest_unsigned(np.concatenate([t.astype(np.int64) for t in tables]))
    else:
        table = np.concatenate(tables).astype(dtype)
    width = table.dtype.itemsize
    bits = np.ascontiguousarray(table).view(f"<u{width}").reshape(len(table), -1)
    distinct_bits, position = _distinct_rows(bits)
    offsets = np.cumsum([0, *(len(t) for t in tables[:-1])])
    index = np.concatenate(
        [
            position[part._stored.get(f"{name}.index", np.zeros(n)).astype(np.int64) + offset]
            for part, n, offset in zip(parts, counts, offsets, strict=True)
        ]
    )
    distinct = distinct_bits.view(table.dtype).reshape((-1, *table.shape[1:]))
    return _table_or_index(name, distinct, index)


def _concat_columns(parts: Sequence[_Columns]) -> _Columns:
    """The trees of ``parts`` one after the other (every column is in tree order)."""
    return _Columns(
        **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in _Columns.__dataclass_fields__
        }
    )


def _rows_per(meta: _Meta, per: str) -> int:
    return {"tree": meta.n_trees, "split": meta.n_splits, "leaf": meta.n_leaves}[per]


def _tree_columns(raw: Tree) -> _Columns:
    state = raw.__getstate__()
    nodes = state["nodes"]
    is_leaf = nodes["left_child"] == _TREE_LEAF
    split = ~is_leaf
    index = np.arange(len(nodes), dtype=np.int64)
    return _Columns(
        tree_node_count=np.array([len(nodes)], dtype=np.int64),
        tree_max_depth=np.array([state["max_depth"]], dtype=np.int64),
        node_is_leaf=is_leaf,
        split_left=nodes["left_child"][split] - index[split],
        split_right=nodes["right_child"][split] - index[split],
        split_feature=nodes["feature"][split],
        split_missing_left=nodes["missing_go_to_left"][split].astype(bool),
        split_threshold=_thresholds_as_float32(nodes["threshold"][split]),
        split_impurity=nodes["impurity"][split],
        split_weight=nodes["weighted_n_node_samples"][split],
        leaf_value=state["values"][is_leaf, 0, :],
        leaf_impurity=nodes["impurity"][is_leaf],
        leaf_weight=nodes["weighted_n_node_samples"][is_leaf],
    )


def _thresholds_as_float32(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: ``x <= t`` is unchanged for float32 x."""
    with np.errstate(over="ignore"):
        rounded = thresholds.astype(np.float32)
    rounded_up = rounded.astype(np.float64) > thresholds
    rounded[rounded_up] = np.nextafter(rounded[rounded_up], np.float32(-np.inf))
    return rounded


def _encode_columns(columns: _Columns) -> dict[str, np.ndarray]:
    stored: dict[str, np.ndarray] = {}
    for name in _PACKED_BITS:
        stored[name] = np.packbits(getattr(columns, name))
    for name in _INT_COLUMNS:
        stored.update(_table_or_raw(name, _narrowest_unsigned(getattr(columns, name))))
    for name, dtype in _FLOAT_COLUMNS.items():
        stored.update(_table_or_raw(name, getattr(columns, name).astype(dtype)))
    return stored


def _narrowest_unsigned(values: np.ndarray) -> np.ndarray:
    largest = int(values.max()) if len(values) else 0
    for dtype in _UNSIGNED:
        if largest <= np.iinfo(np.dtype(dtype)).max:
            return values.astype(dtype)
    raise ArtifactError(f"value {largest} does not fit in 64 bits")  # pragma: no cover


def _table_or_raw(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """Store a column as is, or as its distinct rows plus indices when that is smaller.

    Rows are compared bit for bit. A column with a single distinct row is stored as that row
    alone (``<name>.table`` of length 1, no ``<name>.index``).
    """
    if len(values) == 0:
        return {name: values}
    width = values.dtype.itemsize
    rows = np.ascontiguousarray(values).view(f"<u{width}").reshape(len(values), -1)
    table_bits, index = _distinct_rows(rows)
    table = table_bits.view(values.dtype).reshape((-1, *values.shape[1:]))
    return _table_or_index(name, table, index, values)


def _table_or_index(
    name: str, table: np.ndarray, index: np.ndarray, values: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The smaller way to store ``table[index]`` (``values``, if already at hand)."""
    if len(table) == 1:
        return {f"{name}.table": table}
    narrow_index = _narrowest_unsigned(index)
    if table.nbytes + narrow_index.nbytes >= len(index) * table[:1].nbytes:
        return {name: values if values is not None else np.take(table, index, axis=0)}
    return {f"{name}.table": table, f"{name}.index": narrow_index}


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-d unsigned array (sorted) and the position of each row in them.

    Same result as ``np.unique(rows, axis=0, return_inverse=True)``, many times faster:
    a single row repeated is found in one pass, a column of 8 or 16 bits is counted, a
    wider column is a 1-d ``np.unique``, and rows of several columns are grouped by a
    64-bit hash whose groups are then checked row by row (a collision falls back to
    sorting every column).
    """
    if len(rows) and bool((rows == rows[0]).all()):
        return rows[:1].copy(), np.zeros(len(rows), dtype=np.int64)
    if rows.shape[1] == 1 and rows.dtype.itemsize <= 2:
        present = np.zeros(1 << (8 * rows.dtype.itemsize), dtype=bool)
        present[rows[:, 0]] = True
        table = np.flatnonzero(present).astype(rows.dtype)
        position = np.cumsum(present, dtype=np.int64) - 1
        return table.reshape(-1, 1), position[rows[:, 0]]
    if rows.shape[1] == 1:
        table, index = np.unique(rows[:, 0], return_inverse=True)
        return table.reshape(-1, 1), index.astype(np.int64, copy=False)
    return _distinct_wide_rows(rows)


_ROW_HASH_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def _distinct_wide_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = rows.astype(np.uint64, copy=False)
    hashed = np.zeros(len(rows), dtype=np.uint64)
    for column in range(words.shape[1]):
        multiplier = _ROW_HASH_MULTIPLIERS[column % len(_ROW_HASH_MULTIPLIERS)]
        hashed = (hashed ^ words[:, column]) * multiplier  # wraps modulo 2**64
    _, first, group = np.unique(hashed, return_index=True, return_inverse=True)
    candidates = rows[first]
    if not np.array_equal(candidates[group], rows):  # a hash collision: sort instead
        return _distinct_rows_by_sorting(rows)
    order = np.lexsort(candidates.T[::-1])  # the table in row order, as np.unique gives it
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return candidates[order], position[group]


def _distinct_rows_by_sorting(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts_group = np.ones(len(rows), dtype=bool)
    starts_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    index = np.empty(len(rows), dtype=np.int64)
    index[order] = np.cumsum(starts_group) - 1
    return ordered[starts_group], index


def _column(stored: Mapping[str, np.ndarray], name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a stored column, whichever way it is stored (see _table_or_raw)."""
    if name in stored:
        return stored[name][start:stop]
    table = stored[f"{name}.table"]
    index = stored.get(f"{name}.index")
    if index is None:
        return np.repeat(table, stop - start, axis=0)
    return np.take(table, index[start:stop], axis=0)


def _bounded(name: str, values: np.ndarray, bound: int) -> np.ndarray:
    """``values`` as int64 after checking each is below ``bound`` (unsigned, so never negative)."""
    if len(values) and int(values.max()) >= bound:
        raise ArtifactError(f"{name} holds {int(values.max())}, which must be below {bound}")
    return values.astype(np.int64)


def _build_sklearn_trees(meta: _Meta, stored: Mapping[str, np.ndarray]) -> list[Tree]:
    """Genuine scikit-learn trees from validated arrays (never call it before validation).

    Trees are built one at a time so the temporary arrays stay the size of one tree.
    """
    is_leaf = np.unpackbits(stored["node_is_leaf"], count=meta.n_nodes).view(bool)
    missing_left = np.unpackbits(stored["split_missing_left"], count=meta.n_splits)
    node_count = _column(stored, "tree_node_count", 0, meta.n_trees).astype(np.int64)
    max_depth = _column(stored, "tree_max_depth", 0, meta.n_trees).astype(np.int64)
    node_end = np.cumsum(node_count)
    split_end = np.cumsum(node_count // 2)
    leaf_end = node_end - split_end
    trees = []
    for tree in range(meta.n_trees):
        nodes = slice(int(node_end[tree] - node_count[tree]), int(node_end[tree]))
        splits = slice(int(split_end[tree] - node_count[tree] // 2), int(split_end[tree]))
        leaves = slice(int(leaf_end[tree] - node_count[tree] // 2 - 1), int(leaf_end[tree]))
        state = _tree_state(
            meta,
            stored,
            is_leaf=is_leaf[nodes],
            missing_left=missing_left[splits],
            splits=splits,
            leaves=leaves,
        )
        state["max_depth"] = int(max_depth[tree])
        sklearn_tree = Tree(meta.n_features, np.array([meta.n_values], dtype=np.intp), 1)
        sklearn_tree.__setstate__(state)
        trees.append(sklearn_tree)
    return trees


def _tree_state(
    meta: _Meta,
    stored: Mapping[str, np.ndarray],
    *,
    is_leaf: np.ndarray,
    missing_left: np.ndarray,
    splits: slice,
    leaves: slice,
) -> dict[str, Any]:
    """The ``__setstate__`` dictionary of one scikit-learn tree (without ``max_depth``)."""

    def split_column(name: str) -> np.ndarray:
        return _column(stored, name, splits.start, splits.stop)

    def leaf_column(name: str) -> np.ndarray:
        return _column(stored, name, leaves.start, leaves.stop)

    # Integer positions, not boolean masks: scattering through them is several times faster.
    split_node = np.flatnonzero(~is_leaf)
    leaf_node = np.flatnonzero(is_leaf)
    nodes = np.zeros(len(is_leaf), dtype=NODE_DTYPE)

    def put(field: str, at_splits: Any, at_leaves: Any) -> None:
        column = nodes[field]
        column[split_node] = at_splits
        column[leaf_node] = at_leaves

    put("left_child", split_node + split_column("split_left"), _TREE_LEAF)
    put("right_child", split_node + split_column("split_right"), _TREE_LEAF)
    put("feature", split_column("split_feature"), _TREE_UNDEFINED)
    put("threshold", split_column("split_threshold"), _TREE_UNDEFINED)
    put("missing_go_to_left", missing_left, 0)
    put("impurity", split_column("split_impurity"), leaf_column("leaf_impurity"))
    put("weighted_n_node_samples", split_column("split_weight"), leaf_column("leaf_weight"))
    with np.errstate(invalid="ignore"):
        weight = np.nan_to_num(nodes["weighted_n_node_samples"], posinf=0.0, neginf=0.0)
        nodes["n_node_samples"] = np.rint(weight)
    values = np.zeros((len(is_leaf), meta.n_values), dtype=np.float64)
    values[leaf_node] = leaf_column("leaf_value")
    return {"node_count": len(is_leaf), "nodes": nodes, "values": values[:, np.newaxis, :]}

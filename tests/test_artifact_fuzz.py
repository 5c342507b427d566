"""Damaged and hostile artifacts give ArtifactError: never a crash, a hang or another error.

Most mutations recompute the artifact's checksum, so that the structural validation, not the
checksum, is what has to catch them. The helpers below rebuild artifacts from the layout
documented in groveflow.artifact (prefix, JSON header, 8-byte aligned data section).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier

from groveflow.artifact import Forest, decode_trees, encode_trees
from groveflow.errors import ArtifactError

MAGIC = b"\x93GFOREST"
N_FEATURES = 6

Header = dict[str, Any]
Mutation = Callable[[np.random.Generator, Header, bytearray], None]


def split(blob: bytes) -> tuple[Header, bytearray]:
    """The header and the data section of an artifact."""
    length = int.from_bytes(blob[40:44], "little")
    start = 44 + length
    return json.loads(blob[44:start]), bytearray(blob[start + (-start % 8) :])


def seal(header: Header, data: bytes) -> bytes:
    """An artifact with this header and data section and a correct checksum."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = len(text).to_bytes(4, "little") + text + b"\0" * (-(44 + len(text)) % 8) + data
    return MAGIC + hashlib.sha256(body).digest() + body


def pick(rng: np.random.Generator, options: list[Any]) -> Any:
    """One of ``options`` as the plain Python value (JSON cannot hold numpy scalars)."""
    return options[int(rng.integers(0, len(options)))]


def entry(header: Header, name: str) -> dict[str, Any]:
    return next(item for item in header["arrays"] if item["name"] == name)


def array(header: Header, data: bytearray, name: str) -> np.ndarray:
    """A writable view of one stored array inside ``data``."""
    item = entry(header, name)
    count = int(np.prod(item["shape"]))
    view = np.frombuffer(data, dtype=item["dtype"], count=count, offset=item["offset"])
    return view.reshape(item["shape"])


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    X, _ = make_classification(n_samples=200, n_features=N_FEATURES, random_state=0)
    X[::9, 1] = np.nan
    return X


@pytest.fixture(scope="module")
def classifier_blob(samples: np.ndarray) -> bytes:
    """A small forest with string labels, NaN routing and impure leaves."""
    _, y = make_classification(n_samples=200, n_features=N_FEATURES, random_state=0)
    labels = np.array(["no", "yes"])[y]
    forest = RandomForestClassifier(n_estimators=3, random_state=0, min_samples_leaf=3)
    forest.fit(samples, labels)
    return encode_trees(forest.estimators_, n_features=N_FEATURES, classes=forest.classes_)


@pytest.fixture(scope="module")
def regressor_blob(samples: np.ndarray) -> bytes:
    y = np.nan_to_num(samples[:, 0]) * 3.0 + samples[:, 2]
    forest = ExtraTreesRegressor(n_estimators=2, random_state=0, max_depth=6).fit(samples, y)
    return encode_trees(forest.estimators_, n_features=N_FEATURES, classes=None)


def outcome(blob: bytes, X: np.ndarray) -> str | tuple[np.ndarray, ...]:
    """ "error" for ArtifactError, else what the decoded forest predicts; other errors propagate."""
    try:
        forest = decode_trees(blob)
    except ArtifactError:
        return "error"
    return predictions(forest, X)


def predictions(forest: Forest, X: np.ndarray) -> tuple[np.ndarray, ...]:
    rows = np.zeros((len(X), forest.n_features_in_))
    rows[:, : min(N_FEATURES, forest.n_features_in_)] = X[:, : forest.n_features_in_]
    with np.errstate(all="ignore"):
        mean = forest.predict_proba(rows) if forest.classes_ is not None else forest.predict(rows)
        return mean, forest.apply(rows), forest.feature_importances_


def test_helpers_rebuild_the_documented_layout(classifier_blob: bytes):
    # GIVEN / WHEN an artifact is split and sealed again / THEN the bytes are unchanged
    assert seal(*split(classifier_blob)) == classifier_blob


def test_truncation_at_every_sampled_offset_is_an_error(classifier_blob: bytes):
    # GIVEN every prefix length up to 64 and 150 random ones
    rng = np.random.default_rng(0)
    lengths = {*range(64), *rng.integers(64, len(classifier_blob), 150).tolist()}

    # WHEN / THEN each truncated artifact is refused
    for length in sorted(lengths):
        with pytest.raises(ArtifactError):
            decode_trees(classifier_blob[:length])


def test_flipped_bytes_are_caught_by_the_checksum(classifier_blob: bytes):
    # GIVEN 200 copies with one to three random bytes changed, checksum left as written
    rng = np.random.default_rng(1)
    for _ in range(200):
        damaged = bytearray(classifier_blob)
        for position in rng.integers(0, len(damaged), rng.integers(1, 4)):
            damaged[position] ^= int(rng.integers(1, 256))

        # WHEN / THEN each is refused
        with pytest.raises(ArtifactError):
            decode_trees(bytes(damaged))


def _child_outside_tree(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    # The first split's right child moved to the next tree's root (or further).
    node_count = int(array(header, data, "tree_node_count")[0])
    array(header, data, "split_right")[0] = node_count + int(rng.integers(0, 3))


def _child_not_after_parent(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    right = array(header, data, "split_right")
    right[rng.integers(0, len(right))] = 0


def _left_child_table_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    # Depth-first trees store "left child = parent + 1" as a one-row table.
    array(header, data, "split_left.table")[0] = pick(rng, [0, 255])


def _feature_out_of_range(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    features = array(header, data, "split_feature")
    features[rng.integers(0, len(features))] = N_FEATURES + int(rng.integers(0, 10))


def _table_index_out_of_range(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    names = [item["name"] for item in header["arrays"] if item["name"].endswith(".index")]
    name = pick(rng, names)
    index = array(header, data, name)
    index[rng.integers(0, len(index))] = len(array(header, data, name.replace("index", "table")))


def _leaf_bit_flipped(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    bits = array(header, data, "node_is_leaf")
    n_nodes = header["n_nodes"]
    node = int(rng.integers(0, n_nodes))
    bits[node // 8] ^= 0x80 >> (node % 8)


def _node_count_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    counts = array(header, data, "tree_node_count")
    tree = int(rng.integers(0, len(counts)))
    counts[tree] = max(int(counts[tree]) + pick(rng, [-2, -1, 1, 2]), 0)


def _max_depth_too_deep(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    depths = array(header, data, "tree_max_depth")
    depths[rng.integers(0, len(depths))] = 250


def _invalid_class_label(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    code_points = array(header, data, "classes").view("<u4")
    code_points[0] = pick(rng, [0x110000, 0xFFFFFFFF, 0xD800])


def _duplicate_class_label(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    classes = array(header, data, "classes")
    classes[1] = classes[0]


def _header_count_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    name = pick(rng, ["n_nodes", "n_splits", "n_leaves", "n_trees", "n_values"])
    header[name] = pick(rng, [header[name] - 1, header[name] + 1, 0, -1, 2**39, 2**80, "3", None])


def _header_field_broken(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    name = pick(rng, ["format", "format_version", "task", "arrays", "n_features"])
    header[name] = pick(rng, [None, "regression", 2, 0, [], {}, 1.5, True])


def _dtype_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    item = pick(rng, header["arrays"])
    dtypes = ["|O", "O", ">f8", "<c16", "V8", "<M8[s]", "f8,O", "<U3", "<f4", "<f8", "<u8", "|b1"]
    item["dtype"] = pick(rng, [dtype for dtype in dtypes if dtype != item["dtype"]])


def _shape_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    item = pick(rng, header["arrays"])
    size = item["shape"][0]
    shapes: list[Any] = [[size + 1], [size - 1], [2**39], [2**62], [-1], [1.5], "7", [size, 1, 1]]
    shapes += [[], [0], [size, 2**40]]
    item["shape"] = pick(rng, shapes)


def _offset_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    item = pick(rng, header["arrays"])
    item["offset"] += pick(rng, [-8, 8, 3, -(2**40), 2**40])


def _entries_renamed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    first, second = (int(i) for i in rng.choice(len(header["arrays"]), 2, replace=False))
    choice = pick(rng, [0, 1, 2, 3])
    if choice == 0:
        header["arrays"][first]["name"] = "bogus"
    elif choice == 1:
        header["arrays"][first]["name"] = header["arrays"][second]["name"]
    elif choice == 2:
        del header["arrays"][first]
    else:
        header["arrays"][first]["name"], header["arrays"][second]["name"] = (
            header["arrays"][second]["name"],
            header["arrays"][first]["name"],
        )


def _data_byte_changed(rng: np.random.Generator, header: Header, data: bytearray) -> None:
    for position in rng.integers(0, len(data), rng.integers(1, 4)):
        data[position] ^= int(rng.integers(1, 256))


MUST_FAIL: list[Mutation] = [
    _child_outside_tree,
    _child_not_after_parent,
    _left_child_table_changed,
    _feature_out_of_range,
    _table_index_out_of_range,
    _leaf_bit_flipped,
    _node_count_changed,
    _max_depth_too_deep,
    _invalid_class_label,
    _duplicate_class_label,
]
# These may also give a valid, different forest (a changed threshold) or a harmless change.
MAY_PASS: list[Mutation] = [
    _header_count_changed,
    _header_field_broken,
    _dtype_changed,
    _shape_changed,
    _offset_changed,
    _entries_renamed,
    _data_byte_changed,
]


@pytest.mark.parametrize("mutation", MUST_FAIL, ids=lambda mutation: mutation.__name__)
def test_invalid_structure_with_a_correct_checksum_is_refused(
    mutation: Mutation, classifier_blob: bytes
):
    # GIVEN 30 seeded variants of one structural damage, each resealed with a valid sha256
    rng = np.random.default_rng(2)
    for _ in range(30):
        header, data = split(classifier_blob)
        mutation(rng, header, data)

        # WHEN / THEN validation refuses it
        with pytest.raises(ArtifactError):
            decode_trees(seal(header, data))


@pytest.mark.parametrize("blob_name", ["classifier_blob", "regressor_blob"])
def test_seeded_mutations_never_escape_as_other_errors(
    blob_name: str, samples: np.ndarray, request: pytest.FixtureRequest
):
    # GIVEN 1000 seeded header and data mutations of a valid artifact, resealed
    blob: bytes = request.getfixturevalue(blob_name)
    expected = predictions(decode_trees(blob), samples)
    rng = np.random.default_rng(3)
    counts = {"error": 0, "same": 0, "different": 0}
    for _ in range(1000):
        header, data = split(blob)
        pick(rng, MAY_PASS)(rng, header, data)

        # WHEN it is decoded and, if accepted, used
        result = outcome(seal(header, data), samples)

        # THEN it is an ArtifactError or a working forest (any other exception fails the test)
        if isinstance(result, str):
            counts["error"] += 1
        elif all(
            np.array_equal(a, b, equal_nan=True) for a, b in zip(result, expected, strict=True)
        ):
            counts["same"] += 1
        else:
            counts["different"] += 1
    assert counts["error"] > 800, counts


def test_header_text_damage_with_a_correct_checksum(classifier_blob: bytes, samples: np.ndarray):
    # GIVEN 300 copies whose JSON header text has one to three bytes changed, resealed
    rng = np.random.default_rng(4)
    header_end = 44 + int.from_bytes(classifier_blob[40:44], "little")
    expected = predictions(decode_trees(classifier_blob), samples)
    refused = 0
    for _ in range(300):
        body = bytearray(classifier_blob[40:])
        for position in rng.integers(4, header_end - 40, rng.integers(1, 4)):
            body[position] = int(rng.integers(0, 256))

        # WHEN it is decoded (any exception but ArtifactError fails the test)
        result = outcome(MAGIC + hashlib.sha256(body).digest() + bytes(body), samples)

        # THEN it is refused, or it is a working forest answering for every row and class
        if isinstance(result, str):
            refused += 1
            continue
        mean, leaves, _ = result
        assert mean.shape[0] == len(samples) and leaves.shape[0] == len(samples)
        if mean.ndim == 2 and mean.shape == expected[0].shape:
            np.testing.assert_allclose(mean.sum(axis=1), 1.0)
    # and damaged JSON is mostly refused (a changed digit inside a number may still parse)
    assert refused >= 290, refused  # seeded: all 300 are refused today


def test_header_of_another_artifact_is_refused(classifier_blob: bytes, regressor_blob: bytes):
    # GIVEN a regression header sealed onto classification data, and the reverse
    header_c, data_c = split(classifier_blob)
    header_r, data_r = split(regressor_blob)

    # WHEN / THEN both are refused
    for blob in (seal(header_r, data_c), seal(header_c, data_r)):
        with pytest.raises(ArtifactError):
            decode_trees(blob)


@pytest.mark.parametrize(
    "raw_header",
    [
        b"{not json",
        b"[1, 2]",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "groveflow.forest", "format_version": 1e999}',
        b"\xff\xfe",
        b"",
    ],
    ids=["invalid", "list", "deep", "float", "binary", "empty"],
)
def test_unparsable_headers_are_refused(raw_header: bytes):
    # GIVEN an artifact whose header is not a JSON object, with a correct checksum
    body = len(raw_header).to_bytes(4, "little") + raw_header
    blob = MAGIC + hashlib.sha256(body).digest() + body

    # WHEN / THEN it is refused
    with pytest.raises(ArtifactError):
        decode_trees(blob)


def test_huge_declared_sizes_are_refused_without_allocating(classifier_blob: bytes):
    # GIVEN a header length field and array shapes far beyond the artifact's size
    header, data = split(classifier_blob)
    body = bytearray(seal(header, data)[40:])
    body[:4] = (2**32 - 1).to_bytes(4, "little")
    huge_header = MAGIC + hashlib.sha256(body).digest() + bytes(body)
    header["n_nodes"] = header["n_leaves"] = 2**39
    entry(header, "node_is_leaf")["shape"] = [2**36]

    # WHEN / THEN both are refused (a MemoryError or a long hang would fail the test)
    for blob in (huge_header, seal(header, data)):
        with pytest.raises(ArtifactError):
            decode_trees(blob)


def craft(header: Header, arrays: dict[str, np.ndarray]) -> bytes:
    """An artifact written by hand from a header and arrays (in name order, 8-byte aligned)."""
    entries, data = [], b""
    for name in sorted(arrays):
        entries.append(
            {"name": name, "dtype": arrays[name].dtype.str, "shape": list(arrays[name].shape)}
        )
        entries[-1]["offset"] = len(data)
        data += arrays[name].tobytes() + b"\0" * (-arrays[name].nbytes % 8)
    return seal({**header, "arrays": entries}, data)


def test_small_artifact_declaring_a_huge_forest_is_refused():
    # GIVEN a 0.7 MB artifact, valid for every index check, whose one-row tables declare one
    # tree of 2 million nodes with 30,000 classes: rebuilding it would need ~480 GB
    n_splits, n_classes = 1_000_000, 30_000
    is_leaf = np.r_[np.zeros(n_splits, bool), np.ones(n_splits + 1, bool)]
    arrays = {
        "classes": np.arange(n_classes, dtype="<u2"),
        "node_is_leaf": np.packbits(is_leaf),
        "split_missing_left": np.packbits(np.zeros(n_splits, bool)),
        "tree_node_count": np.array([2 * n_splits + 1], dtype="<u4"),
        "tree_max_depth": np.array([n_splits], dtype="<u4"),
        "split_left.table": np.array([1], dtype="|u1"),
        "split_right.table": np.array([2], dtype="|u1"),
        "split_feature.table": np.array([0], dtype="|u1"),
        "split_threshold.table": np.array([0.5], dtype="<f4"),
        "split_impurity.table": np.array([0.5]),
        "split_weight.table": np.array([2.0]),
        "leaf_value.table": np.full((1, n_classes), 1.0 / n_classes),
        "leaf_impurity.table": np.array([0.0]),
        "leaf_weight.table": np.array([1.0]),
    }
    header = {
        "format": "groveflow.forest",
        "format_version": 1,
        "task": "classification",
        "n_features": N_FEATURES,
        "n_values": n_classes,
        "n_trees": 1,
        "n_nodes": 2 * n_splits + 1,
        "n_splits": n_splits,
        "n_leaves": n_splits + 1,
    }
    blob = craft(header, arrays)
    assert len(blob) < 1_000_000

    # WHEN / THEN it is refused at decode time, before anything is allocated for it
    with pytest.raises(ArtifactError, match="bytes in memory"):
        decode_trees(blob)
    # ... while the same shape with 3 classes is a valid (if odd) forest
    arrays["classes"] = arrays["classes"][:3]
    arrays["leaf_value.table"] = np.full((1, 3), 1.0 / 3)
    small = decode_trees(craft({**header, "n_values": 3}, arrays))
    assert small.predict_proba(np.zeros((1, N_FEATURES))).shape == (1, 3)


def test_harmless_change_keeps_predictions(classifier_blob: bytes, samples: np.ndarray):
    # GIVEN an artifact whose feature count is raised: the extra feature is never split on
    header, data = split(classifier_blob)
    header["n_features"] += 1

    # WHEN it is decoded / THEN it predicts what the original predicts
    result = outcome(seal(header, data), samples)
    assert not isinstance(result, str)
    expected = predictions(decode_trees(classifier_blob), samples)
    assert np.array_equal(result[0], expected[0])

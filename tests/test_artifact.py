"""The forest artifact predicts exactly what scikit-learn predicts for the same trees."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.utils.validation import check_is_fitted

from groveflow.artifact import (
    FORMAT_VERSION,
    Forest,
    decode_trees,
    encode_forest_file,
    encode_trees,
    load_forest,
)
from groveflow.artifact._codec import _distinct_rows
from groveflow.errors import ArtifactError, InvalidPredictRequest, ModelNotFound

N_FEATURES = 8
LEAVES = {"pure": {}, "impure": {"min_samples_leaf": 5, "max_depth": 8}}
CLASSIFIERS = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}
REGRESSORS = {"random_forest": RandomForestRegressor, "extra_trees": ExtraTreesRegressor}


def classification_data(*, with_nan: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 3-class data; with_nan blanks about 10% of two features."""
    X, y = make_classification(
        n_samples=600, n_features=N_FEATURES, n_informative=5, n_classes=3, random_state=seed
    )
    if with_nan:
        rng = np.random.default_rng(seed)
        X[rng.random(len(X)) < 0.1, 2] = np.nan
        X[rng.random(len(X)) < 0.1, 5] = np.nan
    return X, y


def regression_data(*, with_nan: bool) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=500, n_features=N_FEATURES, noise=5.0, random_state=0)
    if with_nan:
        X[np.random.default_rng(0).random(len(X)) < 0.1, 1] = np.nan
    return X, y


def roundtrip(forest: Any) -> Forest:
    classes = getattr(forest, "classes_", None)
    blob = encode_trees(forest.estimators_, n_features=forest.n_features_in_, classes=classes)
    return decode_trees(blob)


def assert_same_forest(ours: Forest, reference: Any, X: np.ndarray) -> None:
    """Bit-for-bit equality of everything a user can ask a forest."""
    if ours.task == "classification":
        proba = ours.predict_proba(X)
        assert np.abs(proba - reference.predict_proba(X)).max() == 0.0
        assert np.array_equal(proba, reference.predict_proba(X))
    assert np.array_equal(ours.predict(X), reference.predict(X))
    assert np.array_equal(ours.apply(X), reference.apply(X))
    assert np.array_equal(ours.feature_importances_, reference.feature_importances_)


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
@pytest.mark.parametrize("leaves", sorted(LEAVES))
@pytest.mark.parametrize("with_nan", [False, True], ids=["dense", "nan"])
@pytest.mark.parametrize("labels", ["int", "str"])
def test_classifier_roundtrip_is_bit_exact(kind: str, leaves: str, with_nan: bool, labels: str):
    # GIVEN a fitted classification forest, possibly with NaN and impure leaves
    X, y = classification_data(with_nan=with_nan)
    target = np.array(["cat", "dog", "emu"])[y] if labels == "str" else y * 10 - 7
    forest = CLASSIFIERS[kind](n_estimators=6, random_state=1, **LEAVES[leaves]).fit(X, target)

    # WHEN its trees go through the artifact
    ours = roundtrip(forest)

    # THEN everything it predicts is scikit-learn's, and the labels keep their dtype
    assert_same_forest(ours, forest, X)
    assert ours.classes_ is not None
    assert ours.classes_.dtype == forest.classes_.dtype
    assert np.array_equal(ours.classes_, forest.classes_)
    assert (ours.n_trees, ours.n_features_in_, ours.task) == (6, N_FEATURES, "classification")


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
@pytest.mark.parametrize("leaves", sorted(LEAVES))
@pytest.mark.parametrize("with_nan", [False, True], ids=["dense", "nan"])
def test_regressor_roundtrip_is_bit_exact(kind: str, leaves: str, with_nan: bool):
    # GIVEN a fitted regression forest
    X, y = regression_data(with_nan=with_nan)
    forest = REGRESSORS[kind](n_estimators=5, random_state=2, **LEAVES[leaves]).fit(X, y)

    # WHEN its trees go through the artifact
    ours = roundtrip(forest)

    # THEN predictions, leaves and importances are scikit-learn's
    assert_same_forest(ours, forest, X)
    assert ours.classes_ is None
    assert ours.task == "regression"


def test_nan_routing_matches_on_rows_unseen_in_training():
    # GIVEN a forest trained without NaN (sklearn sends NaN to the larger child) and one with NaN
    X, y = classification_data(with_nan=False)
    X_nan, y_nan = classification_data(with_nan=True, seed=3)
    for X_fit, y_fit in ((X, y), (X_nan, y_nan)):
        forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_fit, y_fit)

        # WHEN every feature of the scored rows is NaN in turn
        rows = np.repeat(X[:40], N_FEATURES, axis=0)
        rows[np.arange(len(rows)), np.tile(np.arange(N_FEATURES), 40)] = np.nan

        # THEN the artifact routes them exactly as scikit-learn
        assert np.array_equal(roundtrip(forest).apply(rows), forest.apply(rows))
        assert np.array_equal(roundtrip(forest).predict_proba(rows), forest.predict_proba(rows))


def test_float32_thresholds_keep_every_boundary_sample_on_its_side():
    # GIVEN an ExtraTrees forest, whose float64 thresholds are random, not float32 midpoints
    X, y = classification_data(with_nan=False)
    forest = ExtraTreesClassifier(n_estimators=3, random_state=0).fit(X, y)
    ours = roundtrip(forest)

    # WHEN samples sit exactly on, just below and just above each threshold (in float32)
    tree = forest.estimators_[0].tree_
    split = tree.children_left != -1
    below = tree.threshold[split].astype(np.float32)
    boundary = np.concatenate(
        [
            np.nextafter(below, np.float32(-np.inf)),
            below,
            np.nextafter(below, np.float32(np.inf)),
        ]
    )
    rows = np.tile(X[:1].astype(np.float32), (len(boundary), 1))
    rows[np.arange(len(boundary)), np.tile(tree.feature[split], 3)] = boundary

    # THEN every one of them reaches the same leaf as in scikit-learn
    assert np.array_equal(ours.apply(rows), forest.apply(rows))


@pytest.mark.parametrize("n_jobs", [2, 3, -1])
def test_threads_split_rows_without_changing_a_bit(n_jobs: int):
    # GIVEN an artifact and scikit-learn's single-threaded predictions for the same trees
    X, y = classification_data(with_nan=True)
    forest = RandomForestClassifier(n_estimators=7, random_state=0, n_jobs=1).fit(X, y)
    ours = roundtrip(forest)

    # WHEN the artifact predicts on several threads
    ours.n_jobs = n_jobs

    # THEN probabilities and leaves are still bit for bit scikit-learn's, even for 2 rows
    assert np.array_equal(ours.predict_proba(X), forest.predict_proba(X))
    assert np.array_equal(ours.apply(X), forest.apply(X))
    assert np.array_equal(ours.predict_proba(X[:2]), forest.predict_proba(X[:2]))


def test_single_leaf_trees_have_zero_importances():
    # GIVEN a forest fitted on a single class: every tree is one leaf
    X, _ = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, np.full(len(X), 4))

    # WHEN it goes through the artifact
    ours = roundtrip(forest)

    # THEN it predicts the one class and has all-zero importances, like scikit-learn
    assert_same_forest(ours, forest, X)
    assert not ours.feature_importances_.any()


def test_weighted_fit_keeps_fractional_leaf_values_exact():
    # GIVEN a forest fitted with non-integer sample weights (leaf fractions are not k/n)
    X, y = classification_data(with_nan=False)
    weights = np.random.default_rng(0).uniform(0.1, 3.0, len(X))
    forest = RandomForestClassifier(n_estimators=4, random_state=0, min_samples_leaf=3)
    forest.fit(X, y, sample_weight=weights)

    # WHEN / THEN the artifact predicts bit for bit the same
    assert_same_forest(roundtrip(forest), forest, X)


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_to_sklearn_returns_a_genuine_fitted_forest(kind: str):
    # GIVEN an artifact of a classifier with string labels
    X, y = classification_data(with_nan=True)
    labels = np.array(["cat", "dog", "emu"])[y]
    forest = CLASSIFIERS[kind](n_estimators=4, random_state=0).fit(X, labels)
    ours = roundtrip(forest)

    # WHEN it is turned back into a scikit-learn estimator
    estimator = ours.to_sklearn(kind, params={"n_jobs": 1})

    # THEN it is that estimator class, fitted, predicting exactly as the original
    assert type(estimator) is type(forest)
    check_is_fitted(estimator)
    assert estimator.n_estimators == 4
    assert_same_forest(ours, estimator, X)
    assert np.array_equal(estimator.predict(X), forest.predict(X))
    # ... and its trees encode to the very same artifact
    assert encode_trees(
        estimator.estimators_, n_features=N_FEATURES, classes=estimator.classes_
    ) == encode_forest_file(ours)


def test_to_sklearn_regressor_and_bad_kind():
    # GIVEN a regression artifact
    X, y = regression_data(with_nan=False)
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, y)
    ours = roundtrip(forest)

    # WHEN / THEN it becomes a RandomForestRegressor predicting the same values
    estimator = ours.to_sklearn()
    assert isinstance(estimator, RandomForestRegressor)
    assert np.array_equal(estimator.predict(X), forest.predict(X))
    # ... and an unknown kind is refused by name
    with pytest.raises(ValueError, match="gradient_boosting"):
        ours.to_sklearn("gradient_boosting")


def test_concat_of_groves_equals_a_forest_of_their_trees():
    # GIVEN three groves fitted with different seeds, as the grove builders do
    X, y = classification_data(with_nan=True)
    labels = np.array(["cat", "dog", "emu"])[y]
    groves = [
        RandomForestClassifier(n_estimators=3, random_state=seed).fit(X, labels)
        for seed in (11, 12, 13)
    ]
    reference = clone(groves[0]).set_params(n_estimators=9).fit(X[:50], labels[:50])
    reference.estimators_ = [tree for grove in groves for tree in grove.estimators_]

    # WHEN their artifacts are decoded and concatenated
    merged = Forest.concat([roundtrip(grove) for grove in groves])

    # THEN the merged forest is scikit-learn's forest of the concatenated estimators_
    assert merged.n_trees == 9
    assert_same_forest(merged, reference, X)
    # ... and its bytes are those of encoding all the trees at once
    assert encode_forest_file(merged) == encode_trees(
        reference.estimators_, n_features=N_FEATURES, classes=reference.classes_
    )


def test_accumulating_groups_of_trees_equals_the_whole_forest():
    # GIVEN a forest and its trees split into three consecutive groups
    X, y = regression_data(with_nan=True)
    forest = RandomForestRegressor(n_estimators=7, random_state=0).fit(X, y)
    groups = [forest.estimators_[:2], forest.estimators_[2:3], forest.estimators_[3:]]
    forests = [
        decode_trees(encode_trees(trees, n_features=N_FEATURES, classes=None)) for trees in groups
    ]

    # WHEN each group adds its trees to one running sum, divided once at the end
    total = None
    for group in forests:
        total = group.accumulate(X, total)
    assert total is not None

    # THEN the mean is bit for bit the whole forest's prediction
    assert np.array_equal(total[:, 0] / 7, forest.predict(X))
    with pytest.raises(ValueError, match="float64 array of shape"):
        forests[0].accumulate(X, np.zeros((3, 1)))


@pytest.mark.parametrize(
    ("other_kwargs", "named"),
    [
        ({"labels": ["cat", "dog", "eel"]}, "classes_"),
        ({"n_features": N_FEATURES - 1}, "n_features_in_"),
        ({"regression": True}, "regression"),
    ],
)
def test_concat_refuses_mismatched_groves(other_kwargs: dict, named: str):
    # GIVEN a grove and another one that differs in labels, features or task
    X, y = classification_data(with_nan=False)
    base = roundtrip(RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y))
    n_features = other_kwargs.get("n_features", N_FEATURES)
    if other_kwargs.get("regression"):
        other_forest: Any = RandomForestRegressor(n_estimators=2, random_state=0)
        other_forest.fit(X, y.astype(float))
    else:
        labels = np.array(other_kwargs.get("labels", [0, 1, 2]))[y]
        other_forest = RandomForestClassifier(n_estimators=2, random_state=0)
        other_forest.fit(X[:, :n_features], labels)
    other = roundtrip(other_forest)
    if "labels" in other_kwargs:
        base = roundtrip(
            RandomForestClassifier(n_estimators=2, random_state=0).fit(
                X, np.array(["cat", "dog", "emu"])[y]
            )
        )

    # WHEN / THEN concatenation fails and names the mismatch
    with pytest.raises(ArtifactError, match=named):
        Forest.concat([base, other])


def test_concat_refuses_nothing():
    with pytest.raises(ArtifactError, match="empty"):
        Forest.concat([])


def test_same_trees_give_identical_bytes():
    # GIVEN the same forest fitted twice with the same seed
    X, y = classification_data(with_nan=True)
    first, second = (
        RandomForestClassifier(n_estimators=4, random_state=5, min_samples_leaf=5).fit(X, y)
        for _ in range(2)
    )

    # WHEN both are encoded, and one is decoded and encoded again
    blob = encode_trees(first.estimators_, n_features=N_FEATURES, classes=first.classes_)
    again = encode_trees(second.estimators_, n_features=N_FEATURES, classes=second.classes_)

    # THEN all the bytes are identical and the header names this format version
    assert blob == again
    assert encode_forest_file(decode_trees(blob)) == blob
    header_length = int.from_bytes(blob[40:44], "little")
    assert json.loads(blob[44 : 44 + header_length])["format_version"] == FORMAT_VERSION


def test_a_mutable_buffer_is_copied_on_decode():
    # GIVEN an artifact decoded from a bytearray
    X, y = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    buffer = bytearray(
        encode_trees(forest.estimators_, n_features=N_FEATURES, classes=forest.classes_)
    )
    ours = decode_trees(buffer)

    # WHEN the caller then overwrites the buffer
    buffer[:] = bytes(len(buffer))

    # THEN the decoded forest is unaffected
    assert np.array_equal(ours.predict_proba(X), forest.predict_proba(X))


def test_artifact_is_smaller_than_the_trees_it_holds():
    # GIVEN a fully grown forest, whose scikit-learn node and value arrays we can measure
    X, y = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    raw = sum(tree.tree_.__getstate__()["nodes"].nbytes for tree in forest.estimators_)
    raw += sum(tree.tree_.__getstate__()["values"].nbytes for tree in forest.estimators_)

    # WHEN it is encoded
    blob = encode_trees(forest.estimators_, n_features=N_FEATURES, classes=forest.classes_)

    # THEN the artifact takes under a fifth of that
    assert len(blob) < 0.2 * raw


def test_prediction_errors_are_named():
    # GIVEN a regression artifact
    X, y = regression_data(with_nan=False)
    ours = roundtrip(RandomForestRegressor(n_estimators=2, random_state=0).fit(X, y))

    # WHEN / THEN probabilities, a wrong feature count and infinity are refused clearly
    with pytest.raises(InvalidPredictRequest, match="regression"):
        ours.predict_proba(X)
    with pytest.raises(InvalidPredictRequest, match=f"{N_FEATURES - 1} features"):
        ours.predict(X[:, 1:])
    with pytest.raises(ValueError, match="infinity"):
        ours.predict(np.full((1, N_FEATURES), np.inf))


def test_encode_refuses_what_it_cannot_store():
    X, y = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    regressor = RandomForestRegressor(n_estimators=2, random_state=0).fit(X, y.astype(float))
    multi = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, np.c_[y, y])
    trees = forest.estimators_
    cases: list[tuple[dict[str, Any], str]] = [
        ({"trees": [], "classes": forest.classes_}, "empty"),
        ({"trees": trees, "classes": np.array([1, "a"], dtype=object)}, "dtype object"),
        ({"trees": trees, "classes": np.array([0, 1])}, "predicts 3 values"),
        ({"trees": trees, "classes": np.array([0, 0, 1])}, "distinct"),
        ({"trees": trees, "classes": None}, "classes=None"),
        ({"trees": regressor.estimators_, "classes": forest.classes_}, "pass classes"),
        ({"trees": multi.estimators_, "classes": forest.classes_}, "2 outputs"),
        ({"trees": [*trees, "a tree"], "classes": forest.classes_}, r"trees\[2\] is str"),
        ({"trees": trees, "classes": forest.classes_, "n_features": 3}, "not n_features=3"),
    ]
    for kwargs, message in cases:
        n_features = kwargs.pop("n_features", N_FEATURES)
        with pytest.raises(ArtifactError, match=message):
            encode_trees(kwargs["trees"], n_features=n_features, classes=kwargs["classes"])


def test_object_string_classes_are_stored_as_unicode():
    # GIVEN labels held in an object array, as pandas gives them
    X, y = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    classes = np.array(["a", "bb", "ccc"], dtype=object)

    # WHEN they are encoded
    ours = decode_trees(encode_trees(forest.estimators_, n_features=N_FEATURES, classes=classes))

    # THEN they come back as a unicode array, never an object array
    assert ours.classes_ is not None
    assert ours.classes_.dtype == np.dtype("<U3")
    assert list(ours.predict(X[:3])) == list(classes[forest.predict(X[:3])])


# --------------------------------------------------------------------------- load_forest


@pytest.fixture
def model_dir(tmp_path: Path) -> tuple[Path, Forest, np.ndarray]:
    """A model directory as the merge step writes it: forest.gfa and manifest.json."""
    X, y = classification_data(with_nan=False)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    blob = encode_trees(forest.estimators_, n_features=N_FEATURES, classes=forest.classes_)
    (tmp_path / "forest.gfa").write_bytes(blob)
    manifest = {"forest": {"key": "forest.gfa", "sha256": hashlib.sha256(blob).hexdigest()}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path, decode_trees(blob), X


def test_load_forest_from_file_directory_manifest(model_dir: tuple[Path, Forest, np.ndarray]):
    # GIVEN a model directory
    directory, expected, X = model_dir
    manifest = json.loads((directory / "manifest.json").read_text())

    # WHEN it is loaded by file, directory, manifest path and manifest dict
    loaded = [
        load_forest(str(directory / "forest.gfa")),
        load_forest(str(directory)),
        load_forest(str(directory / "manifest.json")),
        load_forest(str(directory), manifest=manifest),
    ]

    # THEN each is the same forest
    for forest in loaded:
        assert np.array_equal(forest.predict_proba(X), expected.predict_proba(X))


def test_load_forest_errors(model_dir: tuple[Path, Forest, np.ndarray]):
    directory, _, _ = model_dir
    # A missing file or manifest is ModelNotFound.
    with pytest.raises(ModelNotFound):
        load_forest(str(directory / "absent.gfa"))
    with pytest.raises(ModelNotFound):
        load_forest(str(directory / "absent"))
    # A manifest whose checksum or shape is wrong is ArtifactError.
    wrong_sha = {"forest": {"key": "forest.gfa", "sha256": "0" * 64}}
    with pytest.raises(ArtifactError, match="sha256"):
        load_forest(str(directory), manifest=wrong_sha)
    with pytest.raises(ArtifactError, match="relative"):
        load_forest(str(directory), manifest={"forest": {"key": "../x", "sha256": "0" * 64}})
    with pytest.raises(ArtifactError, match="needs"):
        load_forest(str(directory), manifest={"model": "forest.gfa"})
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_forest(str(directory))


def test_load_forest_from_s3(model_dir: tuple[Path, Forest, np.ndarray], engine, monkeypatch):
    # GIVEN the model directory uploaded to the local engine's S3 (moto on loopback)
    from groveflow import storage

    directory, expected, X = model_dir
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_S3": engine.endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    storage._s3.cache_clear()
    engine.s3.create_bucket(Bucket="models")
    for name in ("forest.gfa", "manifest.json"):
        engine.s3.put_object(
            Bucket="models", Key=f"run-1/model/{name}", Body=(directory / name).read_bytes()
        )
    try:
        # WHEN it is loaded by prefix, manifest key and blob key
        loaded = [
            load_forest("s3://models/run-1/model"),
            load_forest("s3://models/run-1/model/"),
            load_forest("s3://models/run-1/model/manifest.json"),
            load_forest("s3://models/run-1/model/forest.gfa"),
        ]

        # THEN each predicts like the original, and a missing model is ModelNotFound
        for forest in loaded:
            assert np.array_equal(forest.predict_proba(X), expected.predict_proba(X))
        with pytest.raises(ModelNotFound):
            load_forest("s3://models/run-2/model")
    finally:
        storage._s3.cache_clear()


@pytest.mark.parametrize("dtype", ["<u1", "<u2", "<u4", "<u8"])
@pytest.mark.parametrize("width", [1, 2, 5])
@pytest.mark.parametrize("distinct", [1, 3, 1000])
def test_distinct_rows_equal_numpys_unique_on_every_path(dtype: str, width: int, distinct: int):
    # GIVEN rows drawn from a set of `distinct` random rows (one repeated row when 1)
    rng = np.random.default_rng(width * distinct)
    high = np.iinfo(np.dtype(dtype)).max
    pool = rng.integers(0, high, size=(distinct, width), dtype=dtype, endpoint=True)
    rows = pool[rng.integers(0, distinct, size=5000)]
    # WHEN their distinct rows are found
    table, index = _distinct_rows(rows)
    # THEN the answer is numpy's, sorted rows and the inverse
    expected_table, expected_index = np.unique(rows, axis=0, return_inverse=True)
    assert np.array_equal(table, expected_table)
    assert table.dtype == rows.dtype
    assert np.array_equal(index, expected_index.ravel())


def test_distinct_rows_survive_a_hash_collision(monkeypatch: pytest.MonkeyPatch):
    # GIVEN a row hash that sends every row to one bucket
    import groveflow.artifact._codec as artifact_module

    monkeypatch.setattr(artifact_module, "_ROW_HASH_MULTIPLIERS", np.zeros(1, dtype=np.uint64))
    rows = np.array([[3, 1], [1, 2], [3, 1], [0, 9]], dtype="<u4")
    # WHEN distinct rows are found THEN the sorting fallback still gives numpy's answer
    table, index = _distinct_rows(rows)
    assert table.tolist() == [[0, 9], [1, 2], [3, 1]]
    assert index.tolist() == [2, 1, 2, 0]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("leaves", list(LEAVES))
def test_concat_writes_the_bytes_of_encoding_every_tree_at_once(task: str, leaves: str):
    # GIVEN groves of different sizes (so their columns are stored in different ways)
    if task == "classification":
        X, y = classification_data(with_nan=False)
        make = RandomForestClassifier
    else:
        X, y = make_regression(n_samples=300, n_features=N_FEATURES, random_state=2)
        make = RandomForestRegressor
    groves = [
        make(n_estimators=n, random_state=seed, **LEAVES[leaves]).fit(X[: 60 * n], y[: 60 * n])
        for seed, n in ((1, 1), (2, 4), (3, 2))
    ]
    classes = getattr(groves[0], "classes_", None)
    # WHEN their artifacts are concatenated
    merged = Forest.concat([roundtrip(grove) for grove in groves])
    # THEN the bytes equal those of encoding all their trees at once
    trees = [tree for grove in groves for tree in grove.estimators_]
    assert encode_forest_file(merged) == encode_trees(trees, n_features=N_FEATURES, classes=classes)

"""The split: which rows are held out, as a pure function of the labels, seed and
``test_fraction`` (stratified for classification), for data read whole and data read a part
at a time alike, so both hold out the same rows."""

from __future__ import annotations

import math

import numpy as np

from groveflow.datasets import Dataset, check_weights
from groveflow.errors import InvalidDataset
from groveflow.request import TrainRequest
from groveflow.training._build import WEIGHT_SPLIT
from groveflow.training._shards import allocate

__all__ = ["split_dataset", "split_rows", "test_mask"]


def split_dataset(dataset: Dataset, request: TrainRequest) -> dict[str, np.ndarray]:
    """The training and held-out rows (the split ignores weights), and the training rows'
    weights (``w_train``) when the data has them; held-out metrics are unweighted."""
    train, test = split_rows(dataset.y, request)
    split = {
        "X_train": dataset.X[train],
        "y_train": dataset.y[train],
        "X_test": dataset.X[test],
        "y_test": dataset.y[test],
        "test_rows": test,
    }
    if dataset.weight is not None:
        what = f"the training rows' weights (data.weight={request.data.weight!r})"
        split[WEIGHT_SPLIT] = check_weights(dataset.weight[train], what)
    return split


def split_rows(y: np.ndarray, request: TrainRequest) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out rows, sorted: chosen from the labels, seed and test_fraction
    alone, so an encoding can be learned from the training rows before the features exist
    (:func:`test_mask` says how)."""
    codes = None
    if request.model.task == "classification":
        codes = np.unique(y, return_inverse=True)[1].reshape(-1)
    test = test_mask(len(y), codes, request)
    return np.flatnonzero(~test), np.flatnonzero(test)


def test_mask(n_rows: int, codes: np.ndarray | None, request: TrainRequest) -> np.ndarray:
    """Which rows are held out (a bool per row): ``ceil(test_fraction * n_rows)`` of them,
    stratified when ``codes`` (each row's class number) is given, drawn by
    ``numpy.random.default_rng(seed)``.

    A pure function of the labels, seed and test_fraction: a run that reads its data a
    part at a time (holding a class number per row, not the rows) and one that holds it
    whole hold out the same rows. Per class, ``allocate`` shares the held-out rows in
    proportion and the class's rows are drawn without replacement.
    """
    test = np.zeros(n_rows, dtype=bool)
    n_test = int(np.ceil(request.test_fraction * n_rows))
    rng = np.random.default_rng(request.seed)
    if request.test_fraction == 0:
        pass
    elif codes is not None:
        counts = np.bincount(codes)
        if counts.min() < 2 or n_test < len(counts) or n_rows - n_test < len(counts):
            raise InvalidDataset(
                f"too few rows for a stratified split: {n_rows} rows, {len(counts)} classes, "
                f"the smallest of {counts.min()} rows; test_fraction={request.test_fraction:g} "
                f"holds out {n_test} and trains on {n_rows - n_test}. "
                + _stratified_advice(n_rows, len(counts), int(counts.min()), n_test)
            )
        for number, take in enumerate(allocate(counts, n_test, keep=1)):
            rows = np.flatnonzero(codes == number)
            test[rows[rng.choice(len(rows), int(take), replace=False)]] = True
    else:
        if n_test < 2 or n_rows - n_test < 2:
            raise InvalidDataset(
                f"too few rows ({n_rows}) for test_fraction={request.test_fraction}: "
                f"{n_test} held-out and {n_rows - n_test} training rows; regression needs "
                "at least 2 of each (R^2 is undefined on one row). Add data, raise "
                "test_fraction, or set it to 0 for no holdout"
            )
        test[rng.choice(n_rows, n_test, replace=False)] = True
    if n_rows - int(test.sum()) < 2:
        raise InvalidDataset(f"too few rows to train on: {n_rows - int(test.sum())}")
    return test


def _stratified_advice(n_rows: int, n_classes: int, smallest: int, n_test: int) -> str:
    """What would split ``n_rows`` rows of ``n_classes`` classes: every class needs a row in
    each part (2+ rows), so both the held-out and the training rows must number at least
    ``n_classes``; the ``test_fraction`` range that gives that, rounded inwards."""
    if smallest < 2:
        return (
            "Every class needs 2+ rows (one held out, one to train on): add data, drop the "
            "classes of one row, or set test_fraction to 0 for no holdout"
        )
    low = math.ceil(1000 * n_classes / n_rows) / 1000
    high = math.floor(1000 * (n_rows - n_classes) / n_rows) / 1000
    if low > high:
        return (
            f"The held-out and the training rows must each number at least the {n_classes} "
            "classes, which these rows cannot give: add data, or set test_fraction to 0 for "
            "no holdout"
        )
    direction = (
        f"raise test_fraction to at least {low:g}"
        if n_test < n_classes
        else f"lower test_fraction to at most {high:g}"
    )
    return (
        f"The held-out and the training rows must each number at least the {n_classes} "
        f"classes: {direction}, add data, or set test_fraction to 0 for no holdout"
    )

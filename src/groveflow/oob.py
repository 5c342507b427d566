"""Out-of-bag scores of a forest whose groves were fitted apart.

scikit-learn's ``oob_score`` needs every tree's bootstrap at once, which a merged forest
no longer has. Each grove builder therefore records, on the training rows, the sum of its
trees' out-of-bag predictions (class probabilities, or regression values) and how many of
its trees left each row out, from the very indices scikit-learn draws
(``_generate_unsampled_indices`` of each tree's ``random_state``). The merge adds the groves'
sums in grove order and scores them as ``ForestClassifier._set_oob_score_and_attributes``
and ``ForestRegressor`` do: a row no tree left out gets a zero prediction (scikit-learn's
warning case), the OOB score is accuracy (of the argmax) or R^2 over every training row.
Only the order of the float64 additions differs from scikit-learn's single loop (grove by
grove rather than tree by tree), so scores agree to rounding (about 1e-16).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from groveflow.errors import InvalidRequest
from groveflow.metrics import classification_metrics, regression_metrics

__all__ = ["OOB_PARAM", "OOBTotals", "check_oob_request", "grove_oob", "oob_bytes", "read_oob"]

OOB_PARAM = "oob_score"
"""The ``model.params`` key asking for OOB scores (``true``), as scikit-learn names it."""
MIN_COVERED_FRACTION = 0.5
"""An OOB request is refused when fewer training rows than this are expected to be left
out by at least one tree: the score would describe too few rows to mean anything."""
CURVE_POINTS = 100
"""At most this many points (plus the whole forest) on the OOB curve against trees."""


def wants_oob(params: dict[str, Any]) -> bool:
    """Whether ``model.params`` asks for OOB scores."""
    return params.get(OOB_PARAM) is True


def check_oob_request(kind: str, params: dict[str, Any]) -> None:
    """Refuse, by name, an ``oob_score`` that has no meaning for these parameters."""
    value = params.get(OOB_PARAM, False)
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"model.params.oob_score={value!r}: give true or false (groveflow computes the "
            "OOB accuracy or R^2 and the other metrics itself)"
        )
    if value and not params.get("bootstrap", kind == "random_forest"):
        raise InvalidRequest(
            "model.params.oob_score=true needs bootstrap=true: without bootstrap samples no "
            f"row is out of bag ({kind} defaults to bootstrap="
            f"{'true' if kind == 'random_forest' else 'false'})"
        )


def check_oob_coverage(n_train: int, params: dict[str, Any], n_trees: int) -> None:
    """Refuse an OOB request most training rows would get no OOB prediction for.

    A row is left out of one bootstrap of ``m`` draws from ``n`` rows with probability
    ``(1 - 1/n) ** m``; of no tree, with ``(1 - (1 - 1/n) ** m) ** n_trees``.
    """
    if not wants_oob(params) or n_train < 1:
        return
    from sklearn.ensemble._forest import _get_n_samples_bootstrap

    try:
        draws = _get_n_samples_bootstrap(n_train, params.get("max_samples"))
    except ValueError as error:  # max_samples above the training rows
        raise InvalidRequest(f"model.params.max_samples: {error}") from None
    left_out = (1 - 1 / n_train) ** draws
    covered = 1 - (1 - left_out) ** n_trees
    if covered < MIN_COVERED_FRACTION:
        raise InvalidRequest(
            f"model.params.oob_score: with max_samples={params.get('max_samples')!r} "
            f"({draws} draws of {n_train} training rows) and n_trees={n_trees}, only about "
            f"{covered:.0%} of the rows would be out of bag for any tree; lower max_samples, "
            "add trees, or keep a holdout (test_fraction) instead"
        )


def estimator_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as one grove's scikit-learn estimator takes them (no ``oob_score``: the
    groves' OOB predictions are summed across the whole forest instead)."""
    return {key: value for key, value in params.items() if key != OOB_PARAM}


def grove_oob(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted grove's OOB prediction sums and counts on its training rows ``X``.

    Returns
    -------
    sums : ndarray of shape (n_rows, n_classes) or (n_rows, 1), float64
    counts : ndarray of shape (n_rows,), int64
        Trees that left each row out.
    """
    from sklearn.ensemble._forest import _generate_unsampled_indices, _get_n_samples_bootstrap

    n_rows = X.shape[0]
    draws = _get_n_samples_bootstrap(n_rows, estimator.max_samples)
    classification = hasattr(estimator, "classes_")
    width = len(estimator.classes_) if classification else 1
    sums = np.zeros((n_rows, width), dtype=np.float64)
    counts = np.zeros(n_rows, dtype=np.int64)
    for tree in estimator.estimators_:
        rows = _generate_unsampled_indices(tree.random_state, n_rows, draws)
        if classification:
            sums[rows] += tree.predict_proba(X[rows], check_input=False)
        else:
            sums[rows, 0] += tree.predict(X[rows], check_input=False)
        counts[rows] += 1
    return sums, counts


def oob_bytes(sums: np.ndarray, counts: np.ndarray) -> bytes:
    """A grove's OOB sums and counts as one ``.npz`` (no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, sums=sums, counts=counts)
    return buffer.getvalue()


def read_oob(blob: bytes, n_rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A grove's OOB sums and counts; ValueError if they are not of the run's shape."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        sums, counts = archive["sums"], archive["counts"]
    if sums.shape != (n_rows, width) or counts.shape != (n_rows,):
        raise ValueError(
            f"OOB sums of shape {sums.shape} and counts {counts.shape}; "
            f"the run has {n_rows} training rows and {width} values per row"
        )
    return sums.astype(np.float64, copy=False), counts.astype(np.int64, copy=False)


@dataclass
class OOBTotals:
    """The forest's OOB sums, added grove by grove in grove order, with the score curve."""

    y_train: np.ndarray
    classes: np.ndarray | None
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None
    n_trees: int = 0

    def add_all(
        self, groves: Iterable[tuple[int, np.ndarray, np.ndarray]], total_trees: int
    ) -> list[list[float]]:
        """Add ``(n_trees, sums, counts)`` per grove in order; the ``[trees, score]`` curve."""
        every = max(1, math.ceil(total_trees / CURVE_POINTS))
        curve: list[list[float]] = []
        next_point = every
        for n_trees, sums, counts in groves:
            self.sums = sums.copy() if self.sums is None else self.sums + sums
            self.counts = counts.copy() if self.counts is None else self.counts + counts
            self.n_trees += n_trees
            if self.n_trees >= next_point or self.n_trees == total_trees:
                curve.append([self.n_trees, self.score()])
                next_point = (self.n_trees // every + 1) * every
        return curve

    def decision(self) -> np.ndarray:
        """scikit-learn's ``oob_decision_function_`` (classification) or ``oob_prediction_``."""
        assert self.sums is not None and self.counts is not None
        divisor = np.where(self.counts == 0, 1, self.counts)
        decision = self.sums / divisor[:, np.newaxis]
        return decision if self.classes is not None else decision[:, 0]

    def score(self) -> float:
        """scikit-learn's ``oob_score_``: accuracy of the argmax, or R^2, over every row."""
        decision = self.decision()
        if self.classes is not None:
            labels = np.searchsorted(self.classes, self.y_train)
            return float(np.mean(np.argmax(decision, axis=1) == labels))
        from sklearn.metrics import r2_score

        return float(r2_score(self.y_train, decision))

    def metrics(self) -> dict[str, Any]:
        """The OOB metrics, over the rows some tree left out, and the score over all rows."""
        assert self.counts is not None
        covered = self.counts > 0
        decision = self.decision()
        if not covered.any():
            scores: dict[str, Any] = {}
        elif self.classes is not None:
            scores = classification_metrics(self.y_train[covered], decision[covered], self.classes)
        else:
            scores = regression_metrics(self.y_train[covered], decision[covered])
        return {
            "oob_score": self.score(),
            "n_rows": len(self.y_train),
            "n_rows_without_oob": int((~covered).sum()),
            **scores,
        }

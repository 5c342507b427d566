"""Holdout metrics of a merged forest."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "finite_metrics", "regression_metrics"]


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, log loss and ROC AUC (one-vs-rest if multiclass)."""
    from sklearn import metrics

    y_pred = classes[np.argmax(proba, axis=1)]
    present = np.isin(classes, y_true)
    out: dict[str, Any] = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro")),
        "log_loss": float(metrics.log_loss(y_true, proba, labels=classes)),
    }
    if present.all():
        if len(classes) == 2:
            auc = metrics.roc_auc_score(y_true == classes[1], proba[:, 1])
        else:
            auc = metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
        out["roc_auc"] = float(auc)
    else:
        out["roc_auc"] = None
    return finite_metrics(out)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """R², RMSE and MAE (each ``None``, with a reason, where it is undefined)."""
    import warnings

    from sklearn import metrics

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # overflow and one-row R^2: reported as undefined
        out = {
            "r2": float(metrics.r2_score(y_true, y_pred)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
            "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        }
    return finite_metrics(out)


def finite_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """``scores`` with every NaN or infinite value replaced by ``None``, and why.

    JSON has no NaN or Infinity: a metric undefined on this holdout (R^2 of a constant
    target, an error sum that overflows float64, ...) is ``null``, and the reasons are
    listed under ``"undefined"``.
    """
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    for name, value in scores.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[name] = None
            undefined[name] = (
                "not a number on this holdout (e.g. R^2 of a constant target)"
                if math.isnan(value)
                else "overflows float64 on this holdout (targets too large)"
            )
        else:
            out[name] = value
    if undefined:
        out["undefined"] = undefined
    return out

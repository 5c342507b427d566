"""Holdout metrics of a merged forest."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "regression_metrics"]


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
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """R², RMSE and MAE."""
    from sklearn import metrics

    return {
        "r2": float(metrics.r2_score(y_true, y_pred)),
        "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
    }

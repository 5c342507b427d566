"""groveflow: train scikit-learn random forests on AWS Step Functions and Lambda.

The public API; everything else is a private module. ``train`` and ``predict`` run the
state machines on an engine (the embedded local engine by default, or a deployed
``Stack``), ``load_forest`` reads a trained model, ``runs`` and ``delete`` list and remove
what an engine stores, and the estimators put a groveflow forest in a scikit-learn
``Pipeline``. Imports are lazy: a Lambda handler importing one
module of the package loads neither the engines nor scikit-learn's estimator API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from groveflow.errors import GroveflowError

__version__ = "0.1.0"

__all__ = [
    "GroveForestClassifier",
    "GroveForestRegressor",
    "GroveflowError",
    "Local",
    "RunFailed",
    "RunResult",
    "SearchResult",
    "Stack",
    "__version__",
    "delete",
    "estimate",
    "load_forest",
    "predict",
    "runs",
    "search",
    "train",
]

_HOMES = {
    "train": "groveflow.api",
    "estimate": "groveflow.api",
    "predict": "groveflow.api",
    "search": "groveflow.api",
    "SearchResult": "groveflow.api",
    "RunResult": "groveflow.api",
    "RunFailed": "groveflow.api",
    "Local": "groveflow.engines",
    "Stack": "groveflow.engines",
    "load_forest": "groveflow.artifact",
    "runs": "groveflow.catalog",
    "delete": "groveflow.catalog",
    "GroveForestClassifier": "groveflow.estimators",
    "GroveForestRegressor": "groveflow.estimators",
}

if TYPE_CHECKING:
    from groveflow.api import (
        RunFailed,
        RunResult,
        SearchResult,
        estimate,
        predict,
        search,
        train,
    )
    from groveflow.artifact import load_forest
    from groveflow.catalog import delete, runs
    from groveflow.engines import Local, Stack
    from groveflow.estimators import GroveForestClassifier, GroveForestRegressor


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'groveflow' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)

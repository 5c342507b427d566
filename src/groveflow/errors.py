"""Named errors.

Every error a user can cause is a subclass of :class:`GroveflowError`. On AWS a
handler's exception class name becomes the Lambda ``errorType``, which Step
Functions reports as the execution's ``Error``; the names below are therefore
part of the public interface and are matched by the state machines' Retry and
Catch rules.
"""

from __future__ import annotations


class GroveflowError(Exception):
    """Base class of every error groveflow raises on purpose."""


class InvalidRequest(GroveflowError):
    """The execution input is malformed or asks for something unsupported."""


class InvalidParameter(InvalidRequest, ValueError):
    """An estimator's parameter or ``fit`` argument refused before any run; a ``ValueError``
    too, as scikit-learn's estimators raise for a bad parameter."""


class InvalidDataset(GroveflowError):
    """The dataset cannot be read, or its contents cannot be trained on."""


class DatasetNotFound(InvalidDataset):
    """The dataset URI names a file, object or bundled dataset that does not exist."""


class DatasetTooLarge(InvalidDataset):
    """The dataset would not fit in a grove builder's memory."""


class BudgetExceeded(GroveflowError):
    """The run's estimated AWS cost is above the request's ``max_cost_usd``; refused at Plan,
    before any grove is built."""


class GroveMissing(GroveflowError):
    """Fewer groves were built than the run's failure tolerance allows."""


class GroveMismatch(GroveflowError):
    """A stored grove does not match the run's plan (checksum, classes, features, format)."""


class ArtifactError(GroveflowError):
    """A model or grove artifact is truncated, corrupted or not a groveflow artifact."""


class ModelNotFound(GroveflowError):
    """No model manifest exists at the given location."""


class InvalidPredictRequest(GroveflowError):
    """The prediction input is malformed or does not match the model."""


class ShardMissing(GroveflowError):
    """A prediction shard wrote no predictions part."""

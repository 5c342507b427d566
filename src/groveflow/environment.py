"""The environment variables the Lambda functions read, each read here and only here."""

from __future__ import annotations

import os

from groveflow.errors import GroveflowError

__all__ = ["bucket", "builder_memory_mb"]


def bucket() -> str:
    """``GROVEFLOW_BUCKET``: the stack's bucket, where runs and models live."""
    value = os.environ.get("GROVEFLOW_BUCKET", "")
    if not value:
        raise GroveflowError("GROVEFLOW_BUCKET is not set: the function is not configured by the stack")
    return value


def builder_memory_mb() -> int:
    """``GROVEFLOW_BUILDER_MEMORY_MB``: each grove builder's memory (in MB), for the size guard."""
    return int(os.environ.get("GROVEFLOW_BUILDER_MEMORY_MB", "3008"))

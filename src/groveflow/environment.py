"""The environment variables groveflow reads, each read here and only here: the Lambda
functions' settings, and the interpreters the local engine runs a build with."""

from __future__ import annotations

import os
from pathlib import Path

from groveflow.errors import GroveflowError

__all__ = [
    "bucket",
    "builder_memory_mb",
    "builder_reserved_concurrency",
    "data_buckets",
    "function_memory_mb",
    "local_paths_allowed",
    "merge_memory_mb",
    "pyenv_root",
    "runtime_interpreter",
    "shard_mb",
]


def bucket() -> str:
    """``GROVEFLOW_BUCKET``: the stack's bucket, where runs and models live."""
    value = os.environ.get("GROVEFLOW_BUCKET", "")
    if not value:
        raise GroveflowError(
            "GROVEFLOW_BUCKET is not set: the function is not configured by the stack"
        )
    return value


def builder_memory_mb() -> int:
    """``GROVEFLOW_BUILDER_MEMORY_MB``: each grove builder's memory (in MB), for the size guard."""
    return int(os.environ.get("GROVEFLOW_BUILDER_MEMORY_MB", "3008"))


def merge_memory_mb() -> int | None:
    """``GROVEFLOW_MERGE_MEMORY_MB``: the merge's memory (in MB, the template's
    ``MergeMemorySize``), which the plan checks the forest's merge against; None unset."""
    value = os.environ.get("GROVEFLOW_MERGE_MEMORY_MB", "")
    return int(value) if value.isdigit() else None


def builder_reserved_concurrency() -> int | None:
    """``GROVEFLOW_BUILDER_RESERVED_CONCURRENCY``: the builders' reserved concurrency, or None.

    The template's ``BuilderReservedConcurrency``; 0 (the default) reserves none. When set,
    no more builders than this can run at once, so the plan clamps ``max_concurrency`` to it
    (more would only be throttled).
    """
    value = int(os.environ.get("GROVEFLOW_BUILDER_RESERVED_CONCURRENCY", "0") or 0)
    return value if value > 0 else None


def data_buckets() -> tuple[str, ...]:
    """``GROVEFLOW_DATA_BUCKETS``: comma-separated buckets the stack may read datasets from."""
    raw = os.environ.get("GROVEFLOW_DATA_BUCKETS", "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def local_paths_allowed() -> bool:
    """``GROVEFLOW_LOCAL_ENGINE``: set by the local engine, where datasets may be local paths."""
    return os.environ.get("GROVEFLOW_LOCAL_ENGINE") == "1"


def function_memory_mb() -> int | None:
    """``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``: this function's own memory (in MB), which Lambda
    (and the local engine) sets; None outside a function."""
    value = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    return int(value) if value.isdigit() else None


def shard_mb() -> float:
    """``GROVEFLOW_SHARD_MB``: the size (MiB of float32 features) of the row shards the plan
    writes for data larger than one function (:mod:`groveflow.training._shards`); 16 unset."""
    from groveflow.training._shards import SHARD_MB

    try:
        value = float(os.environ.get("GROVEFLOW_SHARD_MB", ""))
    except ValueError:
        return SHARD_MB
    return value if value > 0 else SHARD_MB


def runtime_interpreter(runtime: str) -> str | None:
    """``PYTHON312`` for the ``python3.12`` runtime (``PYTHON313`` for ``python3.13``...): the
    interpreter the local engine runs a build's functions with (the one the Makefile builds
    the layers' bytecode with); None unset."""
    name = "PYTHON" + runtime.removeprefix("python").replace(".", "")
    return os.environ.get(name) or None


def pyenv_root() -> Path:
    """``PYENV_ROOT``: where pyenv keeps its Pythons (``~/.pyenv`` unset), where the local
    engine looks for a runtime's interpreter not on ``PATH``."""
    return Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser()

"""The embedded local engine: run the project's state machines on this machine.

Imported lazily, so worker processes (which import :mod:`groveflow.local.workers`)
do not load moto.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExecutionResult", "Invocation", "LocalEngine", "project_root"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from groveflow.local import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'groveflow.local' has no attribute {name!r}")

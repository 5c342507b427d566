"""The embedded local engine: run the project's state machines on this machine."""

from groveflow.local.engine import ExecutionResult, Invocation, LocalEngine, project_root

__all__ = ["ExecutionResult", "Invocation", "LocalEngine", "project_root"]

"""What each function really touches: its AWS calls, recorded inside its worker.

While :func:`recording` is active, every API call any botocore client in the
worker makes is appended to a JSON-lines file as one record: the calling function
(``AWS_LAMBDA_FUNCTION_NAME``, which the worker pool sets per invocation), the
service, the operation and its ``Bucket``, ``Key`` and ``Prefix``. botocore's
global history recorder sees every client's calls, so nothing a handler does
escapes it. :func:`read` gives the records back; the IAM check
(:mod:`groveflow.local.iam`) holds them against the template's policies.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.history import BaseHistoryHandler, get_global_history_recorder

__all__ = ["append", "read", "recording"]

_FIELDS = ("Bucket", "Key", "Prefix", "CopySource", "stateMachineArn", "executionArn")


class _Recorder(BaseHistoryHandler):
    """A botocore history handler writing each ``API_CALL`` to the current file."""

    path: str | None = None
    added = False

    def emit(self, event_type: str, payload: Any, source: str) -> None:
        if event_type != "API_CALL" or self.path is None:
            return
        params = payload.get("params") or {}
        record = {
            "event": "call",
            "service": payload.get("service"),
            "operation": payload.get("operation"),
            **{name.lower(): params[name] for name in _FIELDS if name in params},
        }
        append(self.path, record)


_RECORDER = _Recorder()


def append(path: str | Path | None, record: dict[str, Any]) -> None:
    """Append one record, stamped with the calling function and process, in one write."""
    if path is None:
        return
    stamped = {"function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"), "pid": os.getpid()}
    line = (json.dumps({**stamped, **record}, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def recording(path: str | Path | None) -> Iterator[None]:
    """Record every botocore API call of this process to ``path`` meanwhile (None: nothing)."""
    if path is None:
        yield
        return
    history = get_global_history_recorder()
    if not _RECORDER.added:
        history.add_handler(_RECORDER)
        _RECORDER.added = True
    _RECORDER.path = str(path)
    history.enable()
    try:
        yield
    finally:
        history.disable()
        _RECORDER.path = None


def read(path: Path) -> list[dict[str, Any]]:
    """Every record in ``path``, oldest first (none if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

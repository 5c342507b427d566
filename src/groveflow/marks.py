"""Marks in a local state directory that a process is using it: running a run
(:func:`running_mark`, written by :class:`groveflow.Local`'s run) or serving its bucket
(:func:`serving_mark`, written by ``groveflow serve``); :mod:`groveflow.catalog` reads them to
refuse deleting a running run and to send deletes through a live server.

Below the engines and the catalog alike: the engine that writes a mark imports nothing that
lists or deletes runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from groveflow.ids import check_id

__all__ = ["alive", "running_mark", "running_marks", "serving_file", "serving_mark"]


def running_marks(state_dir: Path) -> Path:
    """The directory of ``state_dir``'s running marks (``<run_id>.<pid>.json``)."""
    return state_dir / "executions" / "running"


@contextlib.contextmanager
def running_mark(state_dir: Path, run_id: str) -> Iterator[None]:
    """Mark ``run_id`` as running in ``state_dir`` while this process runs it locally.

    The mark names this process; a mark whose process has ended (killed) is ignored, so
    it does not block a delete, unless another process has since taken its process id: the
    delete's refusal then names the mark to remove.
    """
    mark = running_marks(state_dir) / f"{check_id(run_id)}.{os.getpid()}.json"
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"run_id": run_id, "pid": os.getpid()}))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            mark.unlink()


def serving_file(state_dir: Path) -> Path:
    """The serving mark of ``state_dir`` (``{"endpoint", "pid"}``)."""
    return state_dir / "executions" / "serving.json"


@contextlib.contextmanager
def serving_mark(state_dir: Path, endpoint: str) -> Iterator[None]:
    """Mark ``state_dir`` as served by this process at ``endpoint`` (``groveflow serve``).

    The served bucket holds the state directory's runs in memory too, so a delete in the
    directory alone would leave them served (and mirrored back by the next write): while the
    mark's process lives, deletes are sent through the endpoint instead.
    """
    mark = serving_file(state_dir)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            mark.unlink()


def alive(pid: int) -> bool:
    """Whether a process of id ``pid`` runs on this machine (a mark's writer, or its heir)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

"""Where runs are stored: a local state directory or a bucket, behind one :class:`Place`.

Each answers the few questions that differ between them (the ids stored, an object's bytes,
the executions running, what a run cost, how to remove a prefix); :mod:`groveflow.catalog`
decides everything else once for both.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from groveflow.errors import GroveflowError
from groveflow.follow import execution_cost
from groveflow.ids import is_valid_id
from groveflow.layout import keys
from groveflow.marks import alive, running_marks, serving_file

__all__ = [
    "DELETE_BATCH",
    "BucketPlace",
    "DirPlace",
    "Place",
    "Running",
    "remove_versions",
    "versions",
]

DELETE_BATCH = 1000
"""Keys per ``DeleteObjects`` call: the most S3 takes in one request."""
DESCRIBE_THREADS = 8
"""Concurrent ``DescribeExecution`` (and cost) look-ups when listing a stack's runs."""


@dataclass(frozen=True)
class Running:
    """An execution running for an id.

    Parameters
    ----------
    what : str
        How a message names it: its execution ARN, or ``process <pid> on this machine``.
    mark : Path or None, default=None
        The local running mark that says so (:func:`running_mark`), for a local process:
        a killed run's mark whose process id another process reused says so too.
    """

    what: str
    mark: Path | None = None


class Place(Protocol):
    """Where runs are stored: a bucket or a local state directory."""

    where: str
    """How messages name it (``s3://bucket`` or the state directory)."""

    def ids(self, top: str) -> list[str]:
        """The ids stored under ``runs/`` or ``predictions/``."""
        ...

    def read(self, key: str) -> tuple[bytes, datetime] | None:
        """An object's bytes and when it was stored, or None."""
        ...

    def count(self, prefix: str) -> int:
        """Objects (every version, in a bucket) under ``prefix``."""
        ...

    def remove(self, prefixes: list[str], elsewhere: list[str]) -> None:
        """Remove every object (every version) under ``prefixes`` and the ``elsewhere`` things."""
        ...

    def running(self) -> dict[str, Running]:
        """Each id with a running execution -> that execution."""
        ...

    def newest_status(self, kind: str, run_id: str) -> str | None:
        """The newest execution status of ``kind`` for ``run_id``, where executions are known."""
        ...

    def cost(self, kind: str, run_id: str) -> dict[str, Any] | None:
        """The cost (:class:`groveflow.cost.CostEstimate` as a dict) of its newest succeeded
        execution, if known."""
        ...

    def owned_elsewhere(self, kind: str, run_id: str, data_uri: str | None) -> list[str]:
        """What the place keeps for a run (``kind="train"``, trained on ``data_uri``) or a
        prediction (``"predict"``) beside its prefix (see :class:`groveflow.catalog.Deletion`)."""
        ...

    def local_run_dir(self, run_id: str) -> Path | None:
        """The run's directory on this machine, if the place is a directory."""
        ...

    def invocations(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's Lambda invocations, where the place keeps them."""
        ...

    def served_by(self) -> str | None:
        """The endpoint of a live ``groveflow serve`` holding this place's runs in its own
        memory too (deletes must go through it), or None."""
        ...


# ----------------------------------------------------------------------------- places


class DirPlace:
    """A local state directory: the mirror of the local engine's bucket, and its records.

    Parameters
    ----------
    state_dir : Path
    """

    def __init__(self, state_dir: Path) -> None:
        # The local engine imports moto's server: here, not at the top, so listing a
        # stack's runs (groveflow runs --stack) never loads it.
        from groveflow.local.engine import LOCAL_BUCKET

        self.state_dir = Path(state_dir).expanduser().resolve()
        self.root = self.state_dir / "s3" / LOCAL_BUCKET
        self.where = f"the state directory {self.state_dir}"

    def _path(self, key: str) -> Path:
        return self.root / key

    def ids(self, top: str) -> list[str]:
        directory = self._path(top)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_dir() and is_valid_id(p.name))

    def read(self, key: str) -> tuple[bytes, datetime] | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            modified = path.stat().st_mtime
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return data, datetime.fromtimestamp(modified, tz=UTC)

    def count(self, prefix: str) -> int:
        directory = self._path(prefix)
        if not directory.is_dir():
            return int(directory.is_file())
        return sum(
            1
            for p in directory.rglob("*")
            if p.is_file() and not p.name.endswith(".metadata.json") and not p.name.startswith(".")
        )

    def remove(self, prefixes: list[str], elsewhere: list[str]) -> None:
        for target in [*(self._path(p) for p in prefixes), *(Path(e) for e in elsewhere)]:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()

    def running(self) -> dict[str, Running]:
        found = {}
        directory = running_marks(self.state_dir)
        for mark in directory.glob("*.json") if directory.is_dir() else []:
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                value = json.loads(mark.read_text())
                if alive(int(value["pid"])):
                    what = f"process {value['pid']} on this machine"
                    found[str(value["run_id"])] = Running(what, mark)
        return found

    def served_by(self) -> str | None:
        try:
            value = json.loads(serving_file(self.state_dir).read_text())
            endpoint, pid = str(value["endpoint"]), int(value["pid"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return endpoint if alive(pid) else None

    def newest_status(self, kind: str, run_id: str) -> str | None:
        return None  # the local engine keeps no record of a failed execution

    def _record(self, kind: str, run_id: str) -> Path:
        from groveflow.local.engine import execution_record  # moto: see __init__

        if kind == "predict":
            return execution_record(self.state_dir, prediction_id=run_id)
        return execution_record(self.state_dir, run_id=run_id)

    def cost(self, kind: str, run_id: str) -> dict[str, Any] | None:
        try:
            cost = json.loads(self._record(kind, run_id).read_text()).get("cost")
        except (FileNotFoundError, ValueError, AttributeError):
            return None
        return cost if isinstance(cost, dict) else None

    def invocations(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's invocations, as its execution record keeps them, if it does."""
        try:
            value = json.loads(self._record("train", run_id).read_text()).get("invocations")
        except (FileNotFoundError, ValueError, AttributeError):
            return None
        return value if isinstance(value, list) else None

    def owned_elsewhere(self, kind: str, run_id: str, data_uri: str | None) -> list[str]:
        owned = [str(self._record(kind, run_id))]
        if kind == "predict":
            return owned
        staged = self.state_dir / "datasets" / f"{run_id.removeprefix('fit-')}.npz"
        if run_id.startswith("fit-") and data_uri is not None and Path(data_uri) == staged:
            owned.append(str(staged))  # the estimator's copy of its fit's data
        return owned

    def local_run_dir(self, run_id: str) -> Path | None:
        return self._path(keys.run_prefix(run_id))


STAGED_DATASETS = "datasets/groveflow-fit/"
"""Where an estimator's fit stages its data in a stack's bucket (see ``Stack.data_uri``)."""
MACHINES = {
    "train": "TrainStateMachine",
    "search": "SearchStateMachine",
    "predict": "PredictStateMachine",
}


class BucketPlace:
    """A stack's bucket (or ``groveflow serve``'s), with its state machines' executions.

    Parameters
    ----------
    stack : groveflow.Stack
        The deployed stack, or a ``groveflow serve`` endpoint.
    """

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.bucket = stack.bucket_name()
        self.s3 = stack.client("s3")
        self.where = f"s3://{self.bucket}"
        self._executions: dict[str, list[tuple[str, dict[str, Any]]]] | None = None
        self._arns: dict[str, str] | None = None
        self._lock = threading.Lock()

    def ids(self, top: str) -> list[str]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=top, Delimiter="/"
        ):
            for prefix in page.get("CommonPrefixes", []):
                name = prefix["Prefix"][len(top) :].rstrip("/")
                if is_valid_id(name):
                    found.append(name)
        return sorted(found)

    def read(self, key: str) -> tuple[bytes, datetime] | None:
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return answer["Body"].read(), answer["LastModified"]

    def count(self, prefix: str) -> int:
        return sum(1 for _ in versions(self.s3, self.bucket, prefix))

    def remove(self, prefixes: list[str], elsewhere: list[str]) -> None:
        remove_versions(self.s3, self.bucket, [*prefixes, *elsewhere])

    def _machines(self) -> dict[str, str]:
        """Each kind's state machine ARN (a stack without one lacks that kind)."""
        if self._arns is None:
            arns = {}
            for kind, machine in MACHINES.items():
                with contextlib.suppress(GroveflowError):
                    arns[kind] = self.stack.arn_of(machine)
            self._arns = arns
        return self._arns

    def _described(self, status: str | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Each id -> ``(kind, description)`` of its executions (of ``status`` only, if
        given), newest first."""
        sfn = self.stack.client("stepfunctions")
        listed: list[tuple[str, str]] = []
        for kind, arn in self._machines().items():
            kwargs = {"stateMachineArn": arn, **({"statusFilter": status} if status else {})}
            for page in sfn.get_paginator("list_executions").paginate(**kwargs):
                listed += [(kind, item["executionArn"]) for item in page["executions"]]

        def describe(item: tuple[str, str]) -> tuple[str, dict[str, Any]]:
            return item[0], dict(sfn.describe_execution(executionArn=item[1]))

        with ThreadPoolExecutor(DESCRIBE_THREADS) as pool:
            described = list(pool.map(describe, listed))
        by_id: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for kind, description in sorted(described, key=lambda d: d[1]["startDate"], reverse=True):
            for run_id in _execution_ids(kind, description):
                by_id.setdefault(run_id, []).append((kind, description))
        return by_id

    def _all_executions(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """:meth:`_described` of every execution, looked up once (for a listing)."""
        with self._lock:
            if self._executions is None:
                self._executions = self._described(None)
            return self._executions

    def running(self) -> dict[str, Running]:
        return {
            run_id: Running(executions[0][1]["executionArn"])
            for run_id, executions in self._described("RUNNING").items()
        }

    def newest_status(self, kind: str, run_id: str) -> str | None:
        for seen, description in self._all_executions().get(run_id, []):
            if seen == kind:
                return str(description["status"])
        return None

    def cost(self, kind: str, run_id: str) -> dict[str, Any] | None:
        for seen, description in self._all_executions().get(run_id, []):
            if seen == kind and description["status"] == "SUCCEEDED":
                sfn = self.stack.client("stepfunctions")
                lambdas, logs = self.stack.client("lambda"), self.stack.client("logs")
                # s3: the run's stored estimate, which its S3 requests are counted with
                s3 = self.stack.client("s3")
                return execution_cost(sfn, lambdas, logs, description, s3)
        return None

    def owned_elsewhere(self, kind: str, run_id: str, data_uri: str | None) -> list[str]:
        if kind != "train" or not run_id.startswith("fit-") or data_uri is None:
            return []
        key = f"{STAGED_DATASETS}{run_id.removeprefix('fit-')}.npz"
        return [key] if data_uri == f"s3://{self.bucket}/{key}" else []

    def local_run_dir(self, run_id: str) -> Path | None:
        return None

    def invocations(self, run_id: str) -> list[dict[str, Any]] | None:
        return None  # the cost section (from the REPORT lines) says what they cost

    def served_by(self) -> str | None:
        return None


def versions(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, str]]:
    """Every version and delete marker under ``prefix`` (a whole key: only that key), as
    ``DeleteObjects`` takes them. An unversioned bucket lists each object once (``null``)."""
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if prefix.endswith("/") or item["Key"] == prefix:
                yield {"Key": item["Key"], "VersionId": item["VersionId"]}


def remove_versions(s3: Any, bucket: str, prefixes: list[str]) -> None:
    """Delete every version of every object under ``prefixes``, 1,000 keys a request."""
    for prefix in prefixes:
        batch: list[dict[str, str]] = []
        for version in versions(s3, bucket, prefix):
            batch.append(version)
            if len(batch) == DELETE_BATCH:
                _delete_batch(s3, bucket, batch)
                batch = []
        if batch:
            _delete_batch(s3, bucket, batch)


def _delete_batch(s3: Any, bucket: str, batch: list[dict[str, str]]) -> None:
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    errors = answer.get("Errors", [])
    if errors:
        first = errors[0]
        raise GroveflowError(
            f"{len(errors)} objects of s3://{bucket} could not be deleted, e.g. "
            f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
        )


def _execution_ids(kind: str, description: dict[str, Any]) -> list[str]:
    """The ids an execution works on: the input's ``run_id`` (``prediction_id``), else its
    name, as the plan functions decide; a training run's ``predict`` section's too."""
    try:
        execution_input = json.loads(description.get("input") or "{}")
    except ValueError:
        execution_input = {}
    if not isinstance(execution_input, dict):
        execution_input = {}
    given = execution_input.get("prediction_id" if kind == "predict" else "run_id")
    run_id = given if isinstance(given, str) else description.get("name")
    ids = [run_id] if is_valid_id(run_id) else []
    section = execution_input.get("predict")
    if kind == "train" and isinstance(section, dict) and ids:
        scored = section.get("prediction_id") or ids[0]
        ids += [scored] if is_valid_id(scored) and scored not in ids else []
    return [str(i) for i in ids]

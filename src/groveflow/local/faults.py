"""Fault injection for the local engine: throttles, crashes, timeouts and duplicates on purpose.

A throttle is the ``TooManyRequestsException`` the Invoke API raises before any
handler runs (``Lambda.TooManyRequestsException`` in Step Functions), as on AWS.
Every other fault happens to the real handler in its real worker process:

- a crash kills the worker (``SIGKILL``) at a fault point, so the pool reports
  ``Runtime.ExitError`` and replaces it, whatever the handler had written by then;
- a timeout lowers the function's ``Timeout`` for that attempt and holds the handler
  at a fault point until the pool kills the overrunning worker (``Sandbox.Timedout``);
- an out-of-memory lowers the function's ``MemorySize`` for that attempt below what the
  worker holds and waits at a fault point until the pool's memory monitor kills it
  (``Runtime.OutOfMemory``), as a grove too large for its memory would be every time;
- a duplicate delivers the invocation twice at once (Lambda's at-least-once delivery):
  the two copies wait for each other at the fault point, then both carry on.

A fault point is the handler's start, its end (its writes done, its result not yet
returned), or just before or after its ``PutObject`` of a key matching a glob, e.g.
``after:runs/*/groves/*``. Random draws are seeded by the invocation's payload and
attempt number, so a run's faults are the same whatever the concurrency.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from groveflow.local.sandbox import load_handler

if TYPE_CHECKING:
    from groveflow.local.template import FunctionSpec
    from groveflow.local.workers import Outcome, WorkerPool

__all__ = [
    "FAULT_KINDS",
    "FAULT_POINTS",
    "Fault",
    "FaultInjector",
    "handler_with_fault",
    "parse_faults",
    "run_instrumented",
]

FAULT_KINDS = ("throttle", "crash", "timeout")
"""What ``--inject-faults`` draws; :class:`Fault` also has ``duplicate`` and ``oom``."""
_CHOSEN_KINDS = ("duplicate", "oom")

FAULT_POINTS = ("start", "end", "before:<glob>", "after:<glob>")

_ENV = "GROVEFLOW_FAULT"
_ENTRY = Path(__file__).with_name("fault_entry.py")
_BARRIER_SECONDS = 60.0  # a duplicate waits this long for its twin before failing
_HANG_SECONDS = 3600.0  # a timed-out handler waits this long to be killed


@dataclass(frozen=True)
class Fault:
    """What happens to one invocation attempt.

    Parameters
    ----------
    kind : {"throttle", "crash", "timeout", "duplicate", "oom"}
    point : str, default="start"
        Where the handler meets it: ``start``, ``end``, ``before:<glob>`` or ``after:<glob>``
        (around the handler's ``PutObject`` of a bucket key matching the glob).
    timeout_seconds : int, default=1
        The function's lowered ``Timeout`` for a ``timeout`` fault.
    memory_mb : int, default=1
        The function's lowered ``MemorySize`` (in MB) for an ``oom`` fault.
    """

    kind: str
    point: str = "start"
    timeout_seconds: int = 1
    memory_mb: int = 1

    def __post_init__(self) -> None:
        if self.kind not in (*FAULT_KINDS, *_CHOSEN_KINDS):
            raise ValueError(
                f"bad fault kind {self.kind!r}; accepted: throttle, crash, timeout, duplicate, oom"
            )
        when, sep, pattern = self.point.partition(":")
        if not (
            self.point in ("start", "end") or (sep and when in ("before", "after") and pattern)
        ):
            raise ValueError(
                f"bad fault point {self.point!r}; accepted: start, end, before:<glob>, after:<glob>"
            )


@dataclass(frozen=True)
class FaultInjector:
    """Probabilities (0-1) of each fault per invocation, or faults chosen by a subclass.

    Parameters
    ----------
    throttle, crash, timeout : float, default=0
        A drawn crash or timeout meets the handler at its start or at its end (drawn too).
    seed : int, default=0
    functions : tuple of str, default=("BuildGroveFunction",)
        Logical ids of the functions faults apply to.
    record_to : Path or None, default=None
        A JSON-lines file each invocation appends to from its worker: every AWS call the
        handler makes (``function``, ``service``, ``operation``, ``bucket``, ``key``,
        ``prefix``) and every fault it meets (with the worker's ``pid``). Set, every
        invocation runs instrumented, faulty or not.
    """

    throttle: float = 0.0
    crash: float = 0.0
    timeout: float = 0.0
    seed: int = 0
    functions: tuple[str, ...] = ("BuildGroveFunction",)
    record_to: Path | None = None

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> str | Fault | None:
        """The fault for this attempt of this invocation, or None to run it normally.

        Subclasses may return a :class:`Fault`, or a kind name for one at the handler's start.
        """
        if function not in self.functions:
            return None
        text = json.dumps([self.seed, function, payload, attempt], sort_keys=True)
        digest = hashlib.sha256(text.encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        point = "start" if digest[8] % 2 == 0 else "end"
        for kind in FAULT_KINDS:
            probability = getattr(self, kind)
            if draw < probability:
                return Fault(kind, point)
            draw -= probability
        return None

    def fault_for(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
        """:meth:`decide`'s answer as a :class:`Fault`."""
        decided = self.decide(function, payload, attempt)
        return Fault(decided) if isinstance(decided, str) else decided


def parse_faults(text: str) -> FaultInjector:
    """Parse ``throttle=0.2,crash=0.05,timeout=0.02,seed=7``.

    Raises
    ------
    ValueError
        Naming the bad item and what is accepted.
    """
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep or name not in (*FAULT_KINDS, "seed"):
            raise ValueError(
                f"bad fault {item!r}; accepted: throttle=P, crash=P, timeout=P, seed=N"
            )
        try:
            values[name] = int(raw) if name == "seed" else float(raw)
        except ValueError:
            raise ValueError(f"bad value in {item!r}: expected a number") from None
        if name != "seed" and not 0 <= values[name] <= 1:
            raise ValueError(f"{name}={raw} is not a probability between 0 and 1")
    injector = FaultInjector(**values)
    if injector.throttle + injector.crash + injector.timeout > 1:
        raise ValueError("fault probabilities add up to more than 1")
    return injector


# ------------------------------------------------------------------ engine side


def run_instrumented(
    pool: WorkerPool,
    spec: FunctionSpec,
    payload: bytes,
    fault: Fault | None,
    record_to: Path | None,
) -> Outcome:
    """Run one invocation through :func:`handler_with_fault` in the pool's workers.

    The worker gets the real function's spec with its entry point swapped for this
    module's (which then runs the real handler), and for a timeout the lowered
    ``Timeout``, for an out-of-memory the lowered ``MemorySize``; a duplicate is sent to
    two workers at once, and the first copy's outcome returned. Throttles never get here
    (no handler runs).
    """
    duplicate = fault is not None and fault.kind == "duplicate"
    barrier = Path(tempfile.mkdtemp(prefix="groveflow-twins-")) if duplicate else None
    settings = {
        "code_dir": str(spec.code_dir),
        "handler": spec.handler,
        "fault": None if fault is None else {"kind": fault.kind, "point": fault.point},
        "barrier": str(barrier) if barrier else None,
        "record_to": str(record_to) if record_to else None,
    }
    instrumented = replace(
        spec,
        code_dir=_ENTRY.parent,
        handler=f"{_ENTRY.stem}.handler",
        environment={**spec.environment, _ENV: json.dumps(settings)},
        timeout_seconds=(
            fault.timeout_seconds if fault and fault.kind == "timeout" else spec.timeout_seconds
        ),
        memory_mb=fault.memory_mb if fault and fault.kind == "oom" else spec.memory_mb,
    )
    try:
        if duplicate:
            with ThreadPoolExecutor(1) as twin:
                copy = twin.submit(pool.invoke, instrumented, payload)
                outcome = pool.invoke(instrumented, payload)
                copy.result()
            return outcome
        return pool.invoke(instrumented, payload)
    finally:
        if barrier is not None:
            shutil.rmtree(barrier, ignore_errors=True)


# ------------------------------------------------------------------ worker side


_HANDLERS: dict[tuple[str, str], Callable[..., Any]] = {}
_MODULES: dict[Path, ModuleType] = {}


def _real_handler(code_dir: str, handler: str) -> Callable[..., Any]:
    """The function's own handler, imported once per worker (as the pool imports it)."""
    if (code_dir, handler) not in _HANDLERS:
        name = f"_groveflow_instrumented_{len(_MODULES)}"
        _HANDLERS[code_dir, handler] = load_handler(Path(code_dir), handler, _MODULES, name)
    return _HANDLERS[code_dir, handler]


def handler_with_fault(event: dict[str, Any], context: Any) -> Any:
    """Run the real handler named by ``GROVEFLOW_FAULT``, meeting its fault on the way.

    This is the entry point :func:`run_instrumented` gives the worker; the variable
    (set only by it) names the real handler, the fault, and the access record's file.
    """
    settings = json.loads(os.environ[_ENV])
    handler = _real_handler(settings["code_dir"], settings["handler"])
    fault = settings["fault"]
    meet = _Meeting(fault, settings["barrier"], settings["record_to"])
    # botocore (here) and numpy (storage) are imported only where an invocation meets a
    # fault: the CLI imports this module to parse --inject-faults, and they would add
    # 0.1-0.3 s (measured) to that import
    from groveflow.local.access_log import recording

    with recording(settings["record_to"]), meet.around_writes():
        meet.at("start")
        result = handler(event, context)
        meet.at("end")
    return result


class _Meeting:
    """Where and how one attempt meets its fault, inside the worker."""

    def __init__(
        self, fault: dict[str, str] | None, barrier: str | None, record_to: str | None
    ) -> None:
        self.kind = fault["kind"] if fault else None
        self.point = fault["point"] if fault else None
        self.barrier = Path(barrier) if barrier else None
        self.record_to = record_to

    def at(self, point: str, key: str | None = None) -> None:
        if self.point == point:
            self._happen(key)

    @contextlib.contextmanager
    def around_writes(self) -> Iterator[None]:
        """Meet ``before:<glob>`` / ``after:<glob>`` points at the storage client's PutObject."""
        if self.point is None or ":" not in self.point:
            yield
            return
        from groveflow import storage  # see handler_with_fault

        when, _, pattern = self.point.partition(":")
        events = storage._s3().meta.events

        def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            key = params.get("Key", "")
            context["groveflow_fault_key"] = key
            if when == "before" and fnmatch.fnmatchcase(key, pattern):
                self._happen(key)

        def after(context: dict[str, Any], **_: Any) -> None:
            key = context.get("groveflow_fault_key", "")
            if when == "after" and fnmatch.fnmatchcase(key, pattern):
                self._happen(key)

        events.register("before-parameter-build.s3.PutObject", before, "groveflow-fault-before")
        events.register("after-call.s3.PutObject", after, "groveflow-fault-after")
        try:
            yield
        finally:
            events.unregister(
                "before-parameter-build.s3.PutObject", unique_id="groveflow-fault-before"
            )
            events.unregister("after-call.s3.PutObject", unique_id="groveflow-fault-after")

    def _happen(self, key: str | None) -> None:
        from groveflow.local.access_log import append  # see handler_with_fault

        append(
            self.record_to,
            {
                "event": "fault",
                "kind": self.kind,
                "point": self.point,
                "key": key,
                "pid": os.getpid(),
            },
        )
        if self.kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.kind in ("timeout", "oom"):
            time.sleep(_HANG_SECONDS)  # the pool kills this worker: lowered Timeout, MemorySize
        elif self.kind == "duplicate":
            self._wait_for_twin()

    def _wait_for_twin(self) -> None:
        assert self.barrier is not None
        (self.barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + _BARRIER_SECONDS
        while len(list(self.barrier.iterdir())) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"duplicate delivery: the twin never reached {self.point} "
                    f"within {_BARRIER_SECONDS:.0f} s (does the pool have two idle workers?)"
                )
            time.sleep(0.01)

"""A pool of worker processes that behave like warm Lambda sandboxes.

Each worker imports a handler once and keeps it (and whatever the handler
caches) between invocations, runs it with the function's environment from
template.yaml, and returns its result or its exception as a Lambda function
error. A worker that overruns the function's ``Timeout`` is killed and
replaced, as Lambda does; one that dies is reported as ``Runtime.ExitError``.
Each invocation's peak memory is measured and the function's ``MemorySize`` enforced:
a worker over it is killed and the invocation fails with ``Runtime.OutOfMemory``, as
Lambda's does (see :class:`MemoryMonitor`). A worker's first invocation of a
function is cold: its handler module is imported then, and that time is reported
as the invocation's init duration, as Lambda's ``REPORT`` line reports ``Init
Duration``. Workers run joblib without multiprocessing, as Lambda's sandboxes (no
``/dev/shm``) make it run.

A pool runs either the development venv's code (workers forked from a fork server that
imported it) or the functions as built (``python``: each worker its own process of the
functions' runtime, with the build's code and layers as its ``sys.path``); in both the
worker's side is :mod:`groveflow.local.sandbox`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from groveflow import environment
from groveflow.local import sandbox
from groveflow.local.sandbox import error_document, load_handler
from groveflow.local.template import FunctionSpec

__all__ = [
    "HANDLER_PRELOAD",
    "SANDBOX_PROCESS_NAME",
    "MemoryMonitor",
    "Outcome",
    "WorkerPool",
    "load_handler",
    "runtime_python",
    "sandbox_environment",
    "start_fork_server",
]

HANDLER_PRELOAD = ("joblib.externals.loky.backend.context", "groveflow.local.warm_start")
"""What the engine's workers import before their first invocation (see that module).

A process inherits its parent's multiprocessing start method as a worker starts, so
in a process that joblib's loky backend started (``GridSearchCV(n_jobs=2)``) a
worker asks for ``"loky"``; that context exists once loky's ``context`` module is
imported, so the fork server imports it first."""


@dataclass(frozen=True)
class Outcome:
    """What one invocation returned.

    Parameters
    ----------
    payload : bytes
        The JSON result, or Lambda's error document for a function error.
    error_type : str or None
        The function error's ``errorType`` (exception class name, ``Sandbox.Timedout``,
        ``Runtime.ExitError`` or ``Runtime.OutOfMemory``), None on success.
    duration_ms : float
        Wall time inside the worker, in milliseconds, the handler's import excluded.
    init_ms : float or None, default=None
        For a cold invocation (the worker's first of this function), the handler
        module's import time in milliseconds; None for a warm one.
    max_memory_mb : int or None, default=None
        The worker's peak resident memory during the invocation (in MB, rounded up), as
        ``Max Memory Used`` reports it; None where it cannot be measured (no ``/proc``)
        or for an outcome no worker ran (an injected throttle).
    """

    payload: bytes
    error_type: str | None
    duration_ms: float
    init_ms: float | None = None
    max_memory_mb: int | None = None

    @property
    def cold(self) -> bool:
        """Whether the invocation initialised its handler (a cold start)."""
        return self.init_ms is not None


# ------------------------------------------------------------------ memory

MEMORY_POLL_SECONDS = 0.005
"""How often the monitor reads a busy worker's resident memory."""

_CHILDREN_EVERY = 4  # polls: the handler's child processes are looked for every 20 ms

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:  # the process is gone, or this system has no /proc
        return None


def _resident_kb(pid: int) -> int | None:
    """A process's resident memory now (kB), from ``/proc/<pid>/statm``."""
    statm = _read(f"/proc/{pid}/statm")
    return int(statm.split()[1]) * _PAGE_KB if statm else None


def _descendants(pid: int) -> list[int]:
    """The processes a worker's handler started, and theirs (their memory counts too).

    Children of a process's main thread (``/proc/<pid>/task/<pid>/children``): a process
    started from another thread of the handler is not found, nor counted.
    """
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for child in (_read(f"/proc/{parent}/task/{parent}/children") or b"").split():
            found.append(int(child))
            pending.append(int(child))
    return found


def _peak_kb(pid: int) -> int | None:
    """A process's peak resident memory (``VmHWM``, kB) since it was last reset."""
    status = _read(f"/proc/{pid}/status")
    for line in (status or b"").splitlines():
        if line.startswith(b"VmHWM:"):
            return int(line.split()[1])
    return None


def _reset_peak(pid: int) -> bool:
    """Reset a process's ``VmHWM`` to its resident memory now (Linux's ``clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        return False
    return True


class _Watch:
    """One running invocation's memory: sampled peak, limit, and whether it was killed."""

    def __init__(self, pid: int, limit_mb: int) -> None:
        self.pid = pid
        self.limit_kb = limit_mb * 1024
        self.peak_reset = _reset_peak(pid)
        # What it holds as it starts, so an invocation killed before the first poll (a
        # crash, an injected fault) still reports the memory it had, never 0 MB.
        self.peak_kb = _resident_kb(pid) or 0
        self.measured = self.peak_reset or self.peak_kb > 0
        self.killed = False
        self.samples = 0

    def sample(self) -> None:
        resident = _resident_kb(self.pid)
        if resident is None:
            return
        self.samples += 1
        if self.samples % _CHILDREN_EVERY == 1:  # rarer: the worker's own memory is what grows
            for child in _descendants(self.pid):
                resident += _resident_kb(child) or 0
        self.peak_kb = max(self.peak_kb, resident)
        if self.peak_kb > self.limit_kb:
            self.kill()

    def kill(self) -> None:
        if not self.killed:
            self.killed = True
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def finish(self) -> int | None:
        """The invocation's peak (MB, rounded up), its spikes between samples included;
        over the limit, the worker is killed, as Lambda's sandbox would have been."""
        if self.peak_reset:
            self.peak_kb = max(self.peak_kb, _peak_kb(self.pid) or 0)
        if self.peak_kb > self.limit_kb:
            self.kill()
        return -(-self.peak_kb // 1024) if self.measured else None


class MemoryMonitor:
    """Measures each invocation's peak memory and kills a worker over its ``MemorySize``.

    What is counted is the worker's resident set (RSS), as the kernel reports it in
    ``/proc/<pid>/statm`` and ``VmHWM``, plus that of any process the handler started
    (sampled every fourth poll only: a child's spike between two is missed). A worker
    is forked from the fork server that imported scikit-learn: its RSS counts all the
    anonymous memory it inherited (the imported modules' heap, shared copy-on-write with
    the server but counted in full by each worker, as in a sandbox of its own), but a
    shared library's file pages only once this worker touches them. So a fresh worker
    reads lower than a process that imported the same modules itself: measured here,
    116 MB against 177 MB for ``python3`` importing the build-grove handler (the same
    109 MB of anonymous memory; 9 MB of file pages against 68 MB). Lambda's figure for
    a cold sandbox includes those library pages, so locally a function has about 60 MB
    more headroom than on Lambda.

    A thread polls every busy worker's resident memory every
    :data:`MEMORY_POLL_SECONDS` and kills one over its limit at once; when the
    invocation ends, its ``VmHWM`` (reset to the worker's resident memory just before
    the invocation, by writing ``5`` to ``/proc/<pid>/clear_refs``) catches a spike
    between two polls, and the invocation fails as if it had been killed then. Where
    ``clear_refs`` cannot be written, the peak is the polled one only; where there is no
    ``/proc`` (macOS), memory is neither measured nor enforced.
    """

    def __init__(self, poll_seconds: float = MEMORY_POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._watches: dict[int, _Watch] = {}
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def begin(self, pid: int, limit_mb: int) -> _Watch:
        """Start watching a worker about to run an invocation limited to ``limit_mb``."""
        watch = _Watch(pid, limit_mb)
        with self._lock:
            self._watches[pid] = watch
            if self._thread is None and watch.measured:
                self._thread = threading.Thread(
                    target=self._poll, name="groveflow-memory-monitor", daemon=True
                )
                self._thread.start()
        self._busy.set()
        return watch

    def end(self, watch: _Watch) -> int | None:
        """Stop watching; the invocation's peak memory (MB), see :meth:`_Watch.finish`."""
        with self._lock:
            if self._watches.get(watch.pid) is watch:
                del self._watches[watch.pid]
        return watch.finish()

    def close(self) -> None:
        """Stop the polling thread."""
        self._closed = True
        self._busy.set()

    def _poll(self) -> None:
        while not self._closed:
            self._busy.wait()
            # An invocation is first sampled after one interval (a shorter one is left to
            # its VmHWM), and under the lock: once end() returns, its watch is never
            # sampled again, so a worker back in the pool is never killed for it.
            time.sleep(self.poll_seconds)
            with self._lock:
                for watch in self._watches.values():
                    watch.sample()
                if not self._watches:
                    self._busy.clear()


def _out_of_memory(request_id: str) -> bytes:
    """Lambda's error document for a function killed over its memory: ``errorType``
    ``Runtime.OutOfMemory`` and the runtime's exit message, e.g. (Step Functions' Cause,
    awslabs/aws-deployment-framework issue 758)
    ``{"errorType":"Runtime.OutOfMemory","errorMessage":"RequestId: 7464...db4 Error:
    Runtime exited with error: signal: killed"}``. (Before 2022 Lambda reported the same
    kill as ``Runtime.ExitError``, which the ASL retries as a crash, up to 60 times; it
    retries ``Runtime.OutOfMemory`` once.)"""
    message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    return error_document(OUT_OF_MEMORY, message)


OUT_OF_MEMORY = "Runtime.OutOfMemory"


def _exit_message(exitcode: int | None) -> str:
    """Lambda's message for a runtime that died: ``signal: killed``, ``exit status 1``..."""
    request = f"RequestId: {uuid.uuid4()} Error: Runtime exited"
    if exitcode is None:
        return f"{request} without providing a reason"
    if exitcode < 0:
        names = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault"}
        name = names.get(signal.Signals(-exitcode), signal.Signals(-exitcode).name.lower())
        return f"{request} with error: signal: {name}"
    return f"{request} with error: exit status {exitcode}"


LEFTOVER_MB = 32
"""Memory (MB) over a fresh worker's that another function may leave in a worker before the
pool gives the next function a fresh one instead (see ``WorkerPool._sandbox_for``)."""


class _Spawned:
    """An as-built worker's process (``subprocess.Popen``), with the parts of
    ``multiprocessing.Process`` the pool uses."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    @property
    def exitcode(self) -> int | None:
        """The exit status, ``-N`` if killed by signal N, None while it runs."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)


class _Worker:
    """One sandbox: its process and the pool's end of its pipe; ``start`` starts the
    process on the other end."""

    def __init__(self, start: Callable[[Connection], Any]) -> None:
        self.conn, child = multiprocessing.Pipe()
        try:
            self.process = start(child)
        finally:
            child.close()
        self.function: str | None = None  # the function it last ran
        self.fresh_kb: int | None = None  # its resident memory before its first invocation

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def stop(self) -> None:
        self.kill()
        self.process.join(timeout=5)
        # An invocation still waiting on this pipe (Ctrl-C while the pool closes) may have
        # seen it break and let go of it already: a pipe that is gone is closed enough.
        with contextlib.suppress(OSError):
            self.conn.close()


def _invocation(spec: FunctionSpec, as_built: bool) -> dict[str, Any]:
    """What a worker is sent of a function with each invocation: plain values (see
    :mod:`groveflow.local.sandbox`)."""
    return {
        "function": spec.logical_id,
        "arn": spec.arn,
        "code_dir": str(spec.code_dir),
        "handler": spec.handler,
        "environment": spec.environment,
        "timeout_seconds": spec.timeout_seconds,
        "memory_mb": spec.memory_mb,
        "sys_path": [str(entry) for entry in spec.sys_path] if as_built else [],
    }


def sandbox_environment(environment: dict[str, str]) -> dict[str, str]:
    """An as-built worker's whole environment: what Lambda's Python runtime sets that a
    handler may read, ``environment``, and nothing of this process's. No AWS config or
    credentials file is read (a sandbox has none), and joblib runs serially, as it does
    without ``/dev/shm`` (see :func:`_start_fork_server_without_joblib_multiprocessing`).
    """
    lambda_variables = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "JOBLIB_MULTIPROCESSING": "0",
    }
    return {**lambda_variables, **environment}


class WorkerPool:
    """``size`` warm sandboxes shared by every function, like a Lambda account's concurrency.

    Parameters
    ----------
    size : int
        Worker processes, i.e. invocations that run at once; others wait.
    environment : dict of str to str
        Variables every worker starts with (endpoints, credentials, region).
    preload : list of str, default=()
        Modules each worker imports at start, so the first invocation is warm.
    log_path : Path or None, default=None
        File the workers' output (the functions' logs) is appended to; inherited if None.
    python : str or None, default=None
        Run the functions as built: each worker is its own process of this interpreter
        (the functions' runtime, see :func:`runtime_python`), started with nothing on its
        ``sys.path`` but the standard library and given, at its first invocation, the
        function's :attr:`~groveflow.local.template.FunctionSpec.sys_path`, its built code
        and layers. It serves that function only, as a Lambda sandbox does: another
        function gets another worker, and the pool keeps up to ``size`` idle sandboxes of
        other functions warm beside its ``size`` running ones (Lambda keeps every
        function's; each holds some 150 MB here). Its environment is
        :func:`sandbox_environment`. Nothing is preloaded: the handler's import is the
        cold start, timed as Lambda's ``Init Duration``. None runs the development venv's
        code in workers forked from a fork server that imported ``preload``.
    endpoint : callable or None, default=None
        For development workers: answers ``(method, url, headers, body)`` with
        ``(status, headers, body)``, the engine's endpoint in process
        (:meth:`groveflow.local.server.Server.answer`). The workers then send their
        requests to ``AWS_ENDPOINT_URL_S3`` through their pipe
        (:func:`groveflow.local.sandbox.send_endpoint_requests_through`), and the pool
        answers them while it waits for the invocation's outcome. None: over HTTP.
    """

    def __init__(
        self,
        size: int,
        environment: dict[str, str],
        preload: tuple[str, ...] = (),
        log_path: Path | None = None,
        python: str | None = None,
        *,
        endpoint: Callable[[str, str, list[tuple[str, str]], bytes], Any] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got size={size}")
        if python is not None and preload:
            raise ValueError(f"as-built workers preload nothing, got preload={preload}")
        self.python = python
        self.endpoint = endpoint if python is None else None
        self._size = size
        self._numbers = itertools.count(1)
        self._parked: list[_Worker] = []  # as built: warm sandboxes set aside, oldest first
        self._context: Any = None if python is not None else _context(preload)
        self._environment = dict(environment)
        self._preload = list(preload)
        self.log_path = log_path
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()  # the workers in service (the standby is not)
        self._standby: _Worker | None = None  # a fresh worker started ahead (see _fresh)
        self._standby_start: threading.Thread | None = None
        self._reaping: list[threading.Thread] = []  # workers killed, being waited for
        self._closed = False
        self.memory = MemoryMonitor()
        self._lock = threading.Lock()
        # Workers start in the background (the first waits for the fork server's imports);
        # an invocation waits for an idle one.
        self._start_error: BaseException | None = None
        self._starting = threading.Thread(
            target=self._start_workers, args=(size,), name="groveflow-worker-start", daemon=True
        )
        self._starting.start()

    @property
    def as_built(self) -> bool:
        """Whether the workers run the functions as built (see ``python``)."""
        return self.python is not None

    def _start_process(self, child: Connection) -> Any:
        """Start a worker's process on ``child``, the worker's end of its pipe."""
        if self.python is None:
            through_pipe = self.endpoint is not None
            process = self._context.Process(
                target=sandbox.serve,
                args=(child, self._environment, self._preload, self.log_path),
                kwargs={"endpoint_through_pipe": through_pipe},
                daemon=True,
                name=f"{SANDBOX_PROCESS_NAME}-{next(self._numbers)}",
            )
            process.start()
            return process
        command = [self.python, "-I", "-S", "-B", sandbox.__file__, str(child.fileno())]
        command.append(str(self.log_path or ""))
        popen = subprocess.Popen(
            command,
            pass_fds=(child.fileno(),),
            env=sandbox_environment(self._environment),
            stdin=subprocess.DEVNULL,
        )
        return _Spawned(popen)

    def _start_workers(self, size: int) -> None:
        try:
            for _ in range(size):
                self._idle.put(self._new_worker())
        except BaseException as error:  # reported by the next invoke
            self._start_error = error

    def _next_idle(self, function: str) -> _Worker:
        """The next idle worker, preferring one that last ran ``function`` or none (warm,
        or fresh), as Lambda routes an invocation to its function's warm sandbox."""
        while True:
            try:
                worker = self._idle.get(timeout=0.5)
                break
            except queue.Empty:
                if self._start_error is not None and not self._all:
                    raise RuntimeError(
                        f"the worker pool could not start a worker: {self._start_error}"
                    ) from self._start_error
        passed: list[_Worker] = []
        while worker.function not in (None, function):
            passed.append(worker)
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = passed.pop(0)
                break
        for other in passed:
            self._idle.put(other)
        return worker

    def _new_worker(self) -> _Worker:
        worker = _Worker(self._start_process)
        with self._lock:
            self._all.add(worker)
        return worker

    def _renewed(self, worker: _Worker) -> _Worker:
        """A fresh worker in place of ``worker``, which is stopped."""
        self._retire(worker)
        return self._fresh()

    def _fresh(self) -> _Worker:
        """A fresh worker put in service: the standby if one was started, else one started
        now; either way the next standby starts in the background.

        A fresh worker is a cold start all the same (its handler is imported at its first
        invocation), but the invocation waits for neither its process nor its start (50 to
        150 ms here: the fork, the preparation multiprocessing sends it, its botocore
        session), which a warm engine would otherwise pay at every Plan or Merge that
        follows another function's leftovers (see :meth:`_sandbox_for`), i.e. in every
        fit of a cross-validation.
        """
        starting = self._standby_start
        if starting is not None:
            starting.join()
        with self._lock:
            worker, self._standby = self._standby, None
        if worker is not None and not worker.process.is_alive():
            self._retire(worker)
            worker = None
        if worker is None:
            worker = self._new_worker()
        else:
            with self._lock:
                self._all.add(worker)
        with self._lock:
            running = self._standby_start is not None and self._standby_start.is_alive()
            if self._closed or running or self._standby is not None:
                return worker
            self._standby_start = threading.Thread(
                target=self._start_standby, name="groveflow-worker-standby", daemon=True
            )
            self._standby_start.start()
        return worker

    def _start_standby(self) -> None:
        try:
            worker = _Worker(self._start_process)
        except Exception:  # the next renewal starts its worker itself, and says why it cannot
            return
        with self._lock:
            if not self._closed and self._standby is None:
                self._standby = worker
                return
        worker.stop()

    def _retire(self, worker: _Worker) -> None:
        """Take a worker out of service: killed now, waited for in the background."""
        with self._lock:
            self._all.discard(worker)
        worker.kill()
        reaping = threading.Thread(target=worker.stop, name="groveflow-worker-stop", daemon=True)
        reaping.start()
        with self._lock:
            self._reaping = [thread for thread in self._reaping if thread.is_alive()]
            self._reaping.append(reaping)

    def _replace(self, worker: _Worker) -> None:
        """A fresh worker in place of one that failed (crashed, timed out, over its memory),
        which is stopped first: its exit status is known, and it is gone, when the
        invocation's outcome is."""
        worker.stop()
        self._idle.put(self._renewed(worker))

    def invoke(self, spec: FunctionSpec, payload: bytes) -> Outcome:
        """Run one invocation on the next idle worker, waiting for one if all are busy.

        The worker's memory is watched meanwhile (see :class:`MemoryMonitor`): over the
        function's ``MemorySize`` it is killed, replaced, and the invocation fails with
        ``Runtime.OutOfMemory``.
        """
        worker = self._sandbox_for(spec)
        started = time.monotonic()
        watch = self.memory.begin(worker.process.pid, spec.memory_mb)
        try:
            worker.conn.send((_invocation(spec, self.as_built), payload))
            outcome = self._outcome_of(worker, started + spec.timeout_seconds)
            if outcome is None:
                peak = self.memory.end(watch)
                self._replace(worker)
                if watch.killed:  # killed by the monitor as the timeout came
                    return self._out_of_memory(started, peak)
                seconds = time.monotonic() - started
                message = f"Task timed out after {seconds:.2f} seconds"
                return Outcome(
                    error_document("Sandbox.Timedout", message),
                    "Sandbox.Timedout",
                    seconds * 1000,
                    max_memory_mb=peak,
                )
            body, error_type, duration_ms, init_ms = outcome
        except (EOFError, OSError):
            peak = self.memory.end(watch)
            self._replace(worker)
            if watch.killed:
                return self._out_of_memory(started, peak)
            message = _exit_message(worker.process.exitcode)
            elapsed = (time.monotonic() - started) * 1000
            return Outcome(
                error_document("Runtime.ExitError", message),
                "Runtime.ExitError",
                elapsed,
                max_memory_mb=peak,
            )
        peak = self.memory.end(watch)
        if watch.killed:  # over its memory between two polls, or as it returned
            self._replace(worker)
            return self._out_of_memory(started, peak, init_ms)
        self._idle.put(worker)
        return Outcome(body, error_type, duration_ms, init_ms, max_memory_mb=peak)

    def _outcome_of(self, worker: _Worker, deadline: float) -> tuple[Any, ...] | None:
        """The invocation's outcome, answering the worker's endpoint requests meanwhile;
        None if none came by ``deadline`` (``time.monotonic()``)."""
        while worker.conn.poll(max(0.0, deadline - time.monotonic())):
            message = worker.conn.recv()
            if message[0] != sandbox.ENDPOINT_REQUEST:
                return tuple(message)
            assert self.endpoint is not None
            worker.conn.send(self.endpoint(*message[1:]))
        return None

    def _sandbox_for(self, spec: FunctionSpec) -> _Worker:
        """An idle worker to run ``spec``. On Lambda each function has sandboxes of its own,
        so what another function left in memory never counts against this one. An as-built
        worker that ran another function is replaced by a fresh one (its ``sys.path`` is
        that function's); a development worker only if it holds more than
        :data:`LEFTOVER_MB` over its fresh footprint. Either is a cold start, as Lambda's
        would be."""
        worker = self._next_idle(spec.logical_id)
        if self.as_built and worker.function != spec.logical_id:
            worker = self._swapped(worker, spec.logical_id)
        elif worker.function not in (None, spec.logical_id) and self._holds_leftovers(worker):
            worker = self._renewed(worker)
        if worker.fresh_kb is None:  # its first invocation: what it holds fresh
            worker.fresh_kb = _resident_kb(worker.process.pid)
        worker.function = spec.logical_id
        return worker

    def _swapped(self, worker: _Worker, function: str) -> _Worker:
        """As built: a sandbox set aside warm for ``function`` if there is one, else
        ``worker`` if it is fresh, else a fresh one; ``worker``, if it ran another function,
        is set aside warm for it (beyond ``size`` set aside, the oldest stop)."""
        with self._lock:
            warm = next((w for w in self._parked if w.function == function), None)
            if warm is None and worker.function is None:
                return worker
            if warm is not None:
                self._parked.remove(warm)
            stopping = [] if worker.function is not None else [worker]  # fresh: keep none
            if worker.function is not None:
                self._parked.append(worker)
            excess = max(0, len(self._parked) - self._size)
            stopping += self._parked[:excess]
            del self._parked[:excess]
        for old in stopping:
            self._retire(old)
        if warm is not None and warm.process.is_alive():
            return warm
        if warm is not None:
            self._retire(warm)
        return self._fresh()

    @staticmethod
    def _holds_leftovers(worker: _Worker) -> bool:
        """Whether a worker holds over :data:`LEFTOVER_MB` more than it did fresh."""
        resident = _resident_kb(worker.process.pid)
        if resident is None or worker.fresh_kb is None:
            return False
        return resident - worker.fresh_kb > LEFTOVER_MB * 1024

    def _out_of_memory(
        self, started: float, peak: int | None, init_ms: float | None = None
    ) -> Outcome:
        elapsed = (time.monotonic() - started) * 1000
        document = _out_of_memory(str(uuid.uuid4()))
        return Outcome(document, OUT_OF_MEMORY, elapsed, init_ms, max_memory_mb=peak)

    def close(self) -> None:
        """Stop every worker."""
        self._starting.join()
        self.memory.close()
        with self._lock:
            self._closed = True
            starting = self._standby_start
        if starting is not None:
            starting.join()
        with self._lock:
            workers = list(self._all)
            self._all.clear()
            if self._standby is not None:
                workers.append(self._standby)
                self._standby = None
            reaping = list(self._reaping)
        for worker in workers:
            worker.stop()
        for thread in reaping:
            thread.join()


def _context(preload: tuple[str, ...]) -> Any:
    """Where workers come from: forked by multiprocessing's fork server, which imports
    ``preload`` once, so a worker starts warm in milliseconds instead of importing
    scikit-learn for a second (and a replaced worker is warm at once, as is each
    engine after the first in a process).

    The fork server is a single-threaded process started on first use, so forking it is
    safe while this process runs the moto server's threads. It preloads only the first
    time it starts; a worker imports whatever it lacks itself.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    _leave_the_main_module_alone()
    _start_fork_server_without_joblib_multiprocessing()
    return context


SANDBOX_PROCESS_NAME = "groveflow-sandbox"
"""How the development workers' processes are named (``multiprocessing``'s ``name``)."""

_fork_server_lock = threading.Lock()


def _leave_the_main_module_alone() -> None:
    """Start the pool's workers without running the caller's main module in them.

    ``multiprocessing`` tells each child it starts to import the parent's ``__main__``
    (its script, ``python -m`` module, or ``<stdin>``) as ``__mp_main__`` before it runs,
    so that functions defined there can be unpickled. A worker runs
    :func:`groveflow.local.sandbox.serve` with plain arguments, and needs none of it:
    importing it would run a script without the ``if __name__ == "__main__":`` guard
    again in every worker (which then fails starting an engine of its own, with the
    fork server's tracebacks), print its module-level output once per worker, and fail
    for a script read from stdin (there is no file ``<stdin>`` to run). So the
    preparation data of a process named :data:`SANDBOX_PROCESS_NAME` leaves the main
    module out; every other process is prepared as ``multiprocessing`` prepares it.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_groveflow", False):
        return

    def get_preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if str(name).startswith(SANDBOX_PROCESS_NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._groveflow = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


def _start_fork_server_without_joblib_multiprocessing() -> None:
    """Start the fork server (if it is not running) with ``JOBLIB_MULTIPROCESSING=0``.

    On Lambda, joblib finds no ``/dev/shm``, so it cannot make a semaphore and runs in
    serial mode (``effective_n_jobs(-1) == 1``, with a warning). joblib decides when it
    is imported, which the fork server does (``preload``), so the server starts with the
    variable set and every worker forked from it runs joblib as Lambda does. This
    process's environment is restored at once.
    """
    from multiprocessing import forkserver

    with _fork_server_lock:
        saved = os.environ.get("JOBLIB_MULTIPROCESSING")
        os.environ["JOBLIB_MULTIPROCESSING"] = "0"
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["JOBLIB_MULTIPROCESSING"]
            else:
                os.environ["JOBLIB_MULTIPROCESSING"] = saved


def start_fork_server(preload: tuple[str, ...] = HANDLER_PRELOAD) -> None:
    """Start the fork server now, so it imports ``preload`` while the caller sets up.

    Returns at once; the first worker started afterwards waits for those imports.
    """
    _context(preload)


@functools.cache
def runtime_python(runtime: str) -> str | None:
    """An interpreter of the Lambda runtime ``runtime`` (``python3.12``) on this machine, or
    None: the one ``PYTHON312`` names (see :func:`groveflow.environment.runtime_interpreter`),
    else ``python3.12`` on ``PATH``, else pyenv's newest 3.12, each asked its version."""
    version = runtime.removeprefix("python")
    major, _, minor = version.partition(".")
    if not (runtime.startswith("python") and major.isdigit() and minor.isdigit()):
        raise ValueError(f"not a Python runtime: {runtime!r}; e.g. 'python3.12'")
    candidates = [environment.runtime_interpreter(runtime) or "", shutil.which(runtime) or ""]
    pyenv = environment.pyenv_root() / "versions" / f"{version}*" / "bin" / runtime
    candidates += sorted(glob.glob(str(pyenv)), reverse=True)
    check = f"import sys; sys.exit(sys.version_info[:2] != ({major}, {minor}))"
    for candidate in filter(None, candidates):
        probe = [candidate, "-I", "-S", "-c", check]
        with contextlib.suppress(OSError):
            if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                return candidate
    return None


def default_size() -> int:
    """One worker per core, as the CLI's ``--workers`` default."""
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


if sys.platform == "win32":  # pragma: no cover - the engine needs POSIX process control
    raise ImportError("the groveflow local engine runs on Linux and macOS")

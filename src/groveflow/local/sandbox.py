"""Inside a local Lambda sandbox: receive an invocation, run its handler, send the outcome.

This is the worker's side of :mod:`groveflow.local.workers`, as Lambda's runtime
interface client is a sandbox's. It imports nothing but the standard library, so one
file serves both kinds of worker:

- the development venv's, forked from the pool's fork server, which calls :func:`serve`;
- the as-built ones (``LocalEngine(build_dir=...)``): each its own process of the
  functions' runtime, ``python3.12 -I -S -B sandbox.py FD [LOG]`` (:func:`main`), whose
  ``sys.path`` is the interpreter's standard library until its first invocation puts the
  function's built code and layers before it. Nothing else: not the development venv,
  nor the Lambda runtime's own boto3, so a build that lacks a package fails here.

The pool sends ``(invocation, payload)``, the invocation a dict of plain values (an
as-built worker cannot unpickle groveflow's classes): ``function`` (logical id), ``arn``,
``code_dir``, ``handler``, ``environment``, ``timeout_seconds``, ``memory_mb`` and
``sys_path`` (empty for a development worker). The worker answers ``(body, error_type,
duration_ms, init_ms)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import platform
import signal
import sys
import sysconfig
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "ENDPOINT_REQUEST",
    "IMPORTS_PREFIX",
    "Context",
    "error_document",
    "load_handler",
    "main",
    "request_parts",
    "serve",
]

ENDPOINT_REQUEST = "groveflow-endpoint-request"
"""Tags a message a development worker sends the pool in the middle of an invocation: a
request to the engine's endpoint, ``(ENDPOINT_REQUEST, method, url, headers, body)``,
answered with ``(status, headers, body)`` (see :func:`send_endpoint_requests_through`)."""

IMPORTS_PREFIX = "IMPORTS "
"""How an as-built worker's log line saying where an invocation's imports came from begins
(the rest is JSON: ``function``, ``python``, ``executable`` and ``imported_from``, a dict of
``sys.path`` entry to the top-level packages first imported from it)."""


def error_document(error_type: str, message: str, trace: list[str] | None = None) -> bytes:
    """Lambda's error document for a function error."""
    return json.dumps(
        {"errorType": error_type, "errorMessage": message, "stackTrace": trace or []}
    ).encode()


class Context:
    """The subset of Lambda's context object that handlers use."""

    def __init__(self, invocation: dict[str, Any], deadline: float) -> None:
        self.function_name: str = invocation["function"]
        self.invoked_function_arn: str = invocation["arn"]
        self.memory_limit_in_mb: int = invocation["memory_mb"]
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(
    code_dir: Path, handler: str, cache: dict[Path, ModuleType], module_name: str
) -> Any:
    """The function ``handler`` (``module.function``) names in ``code_dir``, its module
    imported from its file once (under ``module_name``) and kept in ``cache``."""
    module_path, _, function_name = handler.rpartition(".")
    path = code_dir / (module_path.replace(".", "/") + ".py")
    if path not in cache:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import handler module {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        cache[path] = module
    return getattr(cache[path], function_name)


class _InitError(Exception):
    """The handler could not be loaded: Lambda's ``Runtime.*`` error for it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _init(invocation: dict[str, Any], modules: dict[Path, ModuleType]) -> Any:
    """The invocation's handler, its module imported on first use, failures named as
    Lambda's Python runtime names them (``Unable to import module 'app': ...``)."""
    module, _, function = invocation["handler"].rpartition(".")
    try:
        return load_handler(
            Path(invocation["code_dir"]),
            invocation["handler"],
            modules,
            f"_groveflow_fn_{invocation['function']}",
        )
    except ImportError as error:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module}': {error}"
        ) from error
    except AttributeError as error:
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{function}' missing on module '{module}'"
        ) from error


def redirect_output(log_path: Path) -> None:
    """Send what the worker prints (fds 1 and 2 too) to the log file, as Lambda logs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the worker
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log


def _standard_library() -> tuple[str, ...]:
    return tuple({sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")})


def _origin(module: ModuleType, stdlib: tuple[str, ...]) -> str | None:
    """The ``sys.path`` entry a module was imported from; None for the standard library
    and built-in modules."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    entries = [entry for entry in sys.path if entry and file.startswith(entry + os.sep)]
    entry = max(entries, key=len) if entries else os.path.dirname(file)
    if any(entry == root or entry.startswith(root + os.sep) for root in stdlib):
        return None
    return entry


def _log_imports(function: str, before: set[str]) -> None:
    """Log where the packages an invocation imported first came from (as-built workers)."""
    stdlib = _standard_library()
    imported_from: dict[str, list[str]] = {}
    for name in sorted(set(sys.modules) - before):
        module = sys.modules.get(name)
        if "." in name or module is None or name == "__main__":
            continue
        origin = _origin(module, stdlib)
        if origin is not None:
            imported_from.setdefault(origin, []).append(name)
    if imported_from:
        line = {
            "function": function,
            "python": platform.python_version(),
            "executable": sys.executable,
            "imported_from": imported_from,
        }
        print(IMPORTS_PREFIX + json.dumps(line), flush=True)


class _RawBody(io.BytesIO):
    """A response body as botocore reads it from urllib3 (a stream with ``stream``), as
    moto's ``MockRawResponse`` is."""

    def stream(self, **_: Any) -> Any:
        while chunk := self.read(65536):
            yield chunk


def request_parts(request: Any) -> tuple[list[tuple[str, str]], bytes]:
    """A botocore ``AWSPreparedRequest``'s headers (text) and body (bytes), as the endpoint's
    application takes them (``groveflow.local.server`` answers them in process too)."""
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    headers = [
        (name, value.decode("latin-1") if isinstance(value, bytes) else str(value))
        for name, value in request.headers.items()
    ]
    return headers, body or b""


def send_endpoint_requests_through(conn: Connection, endpoint: str) -> None:
    """Send this worker's requests to the engine's ``endpoint`` (its S3) through the pool's
    pipe instead of a TCP connection of their own (development workers only).

    The pool answers each with the endpoint's own application (the same one its HTTP
    server runs), so the answer is the same; a worker's request no longer costs the
    engine a connection, a server thread and the HTTP parsing. Registered on botocore's
    default session (``before-send``), which every client a handler makes copies; a lock
    keeps one request at a time on the pipe (the merge reads from several threads).
    """
    import threading

    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    origin = endpoint.rstrip("/") + "/"
    lock = threading.Lock()

    def send(request: Any, **_: Any) -> Any:
        if not request.url.startswith(origin):
            return None
        headers, body = request_parts(request)
        message = (ENDPOINT_REQUEST, request.method, request.url, headers, body)
        with lock:
            conn.send(message)
            status, answered, content = conn.recv()
        response_headers = HTTPHeaders()
        for name, value in answered:
            response_headers[name] = value
        return AWSResponse(request.url, status, response_headers, _RawBody(content))

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send", send)


def serve(
    conn: Connection,
    base_environment: dict[str, str],
    preload: list[str],
    log_path: Path | None,
    report_imports: bool = False,
    *,
    endpoint_through_pipe: bool = False,
) -> None:
    """A worker's main loop: receive an invocation, run it, send the outcome.

    Parameters
    ----------
    conn : Connection
        The pool's end of the pipe.
    base_environment : dict of str to str
        Variables set before anything is imported.
    preload : list of str
        Modules imported before the first invocation.
    log_path : Path or None
        Where the worker's output goes (the functions' logs); inherited if None.
    report_imports : bool, default=False
        Log, after each invocation that imported packages, where they came from
        (:data:`IMPORTS_PREFIX`).
    endpoint_through_pipe : bool, default=False
        Send requests to ``AWS_ENDPOINT_URL_S3`` through ``conn``
        (:func:`send_endpoint_requests_through`); needs botocore.
    """
    if log_path is not None:
        redirect_output(log_path)
    os.environ.update(base_environment)
    baseline = dict(os.environ)
    for name in preload:
        importlib.import_module(name)
    if endpoint_through_pipe and base_environment.get("AWS_ENDPOINT_URL_S3"):
        send_endpoint_requests_through(conn, base_environment["AWS_ENDPOINT_URL_S3"])
    modules: dict[Path, ModuleType] = {}
    bound_path: list[str] = []  # as built: the function's code and layers, once bound
    while True:
        try:
            invocation, payload = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        started = time.monotonic()
        _enter(invocation, baseline, bound_path)
        before = set(sys.modules) if report_imports else set()
        outcome = _run(invocation, payload, modules, started)
        if report_imports:
            _log_imports(invocation["function"], before)
        conn.send(outcome)


def _enter(invocation: dict[str, Any], baseline: dict[str, str], bound_path: list[str]) -> None:
    """Give the invocation the worker's environment and the function's; an as-built
    sandbox's first invocation also puts the function's ``sys_path`` first on ``sys.path``
    (into ``bound_path``): a sandbox is one function's."""
    os.environ.clear()
    os.environ.update(baseline)
    os.environ.update(invocation["environment"])
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = invocation["function"]
    os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(invocation["memory_mb"])
    if invocation["sys_path"] and not bound_path:
        bound_path.extend(invocation["sys_path"])
        sys.path[:0] = bound_path
        os.environ["LAMBDA_TASK_ROOT"] = bound_path[0]


def _run(
    invocation: dict[str, Any], payload: bytes, modules: dict[Path, ModuleType], started: float
) -> tuple[bytes, str | None, float, float | None]:
    """Run one invocation that arrived at ``started`` (``time.monotonic()``): its
    ``(body, error_type, duration_ms, init_ms)``, the handler's import (a cold start)
    timed as its init, not its duration."""
    init_ms: float | None = None
    try:
        loaded = len(modules)
        handler = _init(invocation, modules)
        if len(modules) > loaded:
            init_ms = (time.monotonic() - started) * 1000
            started = time.monotonic()
        deadline = started + invocation["timeout_seconds"]
        result = handler(json.loads(payload), Context(invocation, deadline))
        message: tuple[bytes, str | None] = (json.dumps(result).encode(), None)
    except _InitError as error:
        message = (error_document(error.error_type, str(error)), error.error_type)
    except Exception as error:
        # As Lambda's Python runtime does: the frames of the error's own traceback from
        # the handler's on (not this function's).
        trace = traceback.format_list(traceback.extract_tb(error.__traceback__)[1:])
        message = (error_document(type(error).__name__, str(error), trace), type(error).__name__)
    return (*message, (time.monotonic() - started) * 1000, init_ms)


def main(argv: list[str]) -> None:
    """An as-built worker: ``sandbox.py FD [LOG]``, FD its end of the pool's pipe.

    It ignores Ctrl-C (the engine stops its workers itself), and ends when the pool's
    end of the pipe closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log_path = Path(argv[2]) if len(argv) > 2 and argv[2] else None
    serve(Connection(int(argv[1])), {}, [], log_path, report_imports=True)


if __name__ == "__main__":
    main(sys.argv)

"""The local endpoint: one moto server per process, serving S3, Step Functions and Logs.

The interpreter, the worker processes and any AWS CLI or boto3 client talk to it on a
loopback port; every engine in the process shares it (and its bucket).

``groveflow serve`` holds other clients' requests while its engine starts
(:meth:`Server.hold_clients`): a client that calls as soon as the port opens is
answered once the state machines exist, not with an empty list.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, cast

import boto3
import botocore.handlers
from botocore.exceptions import ClientError

from groveflow.local import moto_compat
from groveflow.local.intrinsics import REGION
from groveflow.local.lambda_service import dispatch_invoke
from groveflow.local.mirror import install
from groveflow.local.sandbox import request_parts

__all__ = ["CREDENTIALS", "Server", "port_is_free"]

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# Requests made by this process's own botocore clients carry this header, so the server
# can tell them from other clients' while it holds those (its value changes per process).
_OWN_HEADER = "x-groveflow-engine"
_OWN_TOKEN = secrets.token_hex(16)


def port_is_free(port: int) -> bool:
    """Whether the server could listen on ``port`` of 127.0.0.1 now.

    The probe binds as the server does, with ``SO_REUSEADDR``: the connections of a
    server stopped a moment ago wait in ``TIME_WAIT`` for a minute, and only a bind
    without that option is refused for them.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _mark_own_request(request: Any, **_: Any) -> None:
    """botocore ``before-send``: mark a request from this process (see ``_OWN_HEADER``)."""
    request.headers[_OWN_HEADER] = _OWN_TOKEN


class _HoldClients:
    """WSGI middleware: while ``admitted`` is clear, other processes' requests wait."""

    def __init__(self, app: Callable[..., Iterable[bytes]], admitted: threading.Event) -> None:
        self.app = app
        self.admitted = admitted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        own = environ.get("HTTP_" + _OWN_HEADER.upper().replace("-", "_")) == _OWN_TOKEN
        if not own:
            self.admitted.wait()
        return self.app(environ, start_response)


class _InProcess:
    """botocore ``before-send``: this process's own requests to the endpoint are answered
    by the endpoint's WSGI application in this thread, without a socket.

    The interpreter's S3 reads and writes (ItemReader, ResultWriter), the follower's
    ``DescribeExecution`` and the engine's own calls would otherwise each cost a TCP
    connection (the server closes every one), a server thread and the HTTP encoding
    both ways, all on the CPU the workers need. The request reaches the same application
    with the same headers and body as over HTTP (underscored header names preserved as
    moto's request handler preserves them), so the answer is the same; other processes'
    requests, the workers' included, still come over HTTP.
    """

    def __init__(
        self, app: Callable[..., Iterable[bytes]], port: int, admitted: threading.Event
    ) -> None:
        self.app = app
        self.origins = (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/")
        self.admitted = admitted

    def __call__(self, request: Any, **_: Any) -> Any:
        if not request.url.startswith(self.origins):
            return None
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders
        from moto.core.botocore_stubber import MockRawResponse

        headers, body = request_parts(request)
        code, response_headers, content = self.answer(request.method, request.url, headers, body)
        answered = HTTPHeaders()
        for name, value in response_headers:
            answered[name] = value
        return AWSResponse(request.url, code, answered, MockRawResponse(content))

    def answer(
        self, method: str, address: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to the endpoint, answered by its application: status, headers, body.

        An S3 request is answered by moto's S3 handler without the Flask application
        around it (see :func:`_answer_s3`), with the answer that application gives.
        """
        answered = _answer_s3(method, address, headers, body, self.admitted)
        if answered is not None:
            return answered
        return self._answer_wsgi(method, address, headers, body)

    def _answer_wsgi(
        self, method: str, address: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        url = urllib.parse.urlsplit(address)
        builder = EnvironBuilder(
            path=url.path,
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=method,
            headers=headers,
            data=body,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        environ["RAW_URI"] = environ["REQUEST_URI"] = url.path + (
            f"?{url.query}" if url.query else ""
        )
        _preserve_header_names(environ, headers)
        chunks, status, response_headers = run_wsgi_app(self.app, environ, buffered=True)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(status.split(" ", 1)[0]), list(response_headers), content


@functools.cache
def _s3_routes() -> tuple[tuple[re.Pattern[str], Callable[..., Any]], ...]:
    """moto's S3 URL paths (moto/s3/urls.py) for a path-style request to the endpoint, in
    moto's order, with their handlers."""
    from moto.s3 import urls

    return tuple((re.compile(path.format("")), handler) for path, handler in urls.url_paths.items())


def _answer_s3(
    method: str,
    address: str,
    headers: list[tuple[str, str]],
    body: bytes,
    admitted: threading.Event,
) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """An S3 request (signed for ``s3``) answered by moto's S3 handler, as moto's in-process
    mode (``mock_aws``, moto/core/botocore_stubber.py) calls it, with what the server's
    Flask application adds to its answer (see :func:`_as_flask_answers`); None for any
    other request.

    Not a correction: the Flask application only routes the request to the same handler
    with the same request (moto's ``BackendRequest``, its raw URL kept) and wraps the
    answer, but costs as much CPU as the handler, on the engine's one interpreter lock,
    for every object a grove builder reads or stores. Requests from other processes wait
    while the server holds them (:class:`_HoldClients`).
    """
    handler = _s3_handler(address, headers)
    if handler is None:
        return None
    if not any(n.lower() == _OWN_HEADER and v == _OWN_TOKEN for n, v in headers):
        admitted.wait()
    status, answered, content = _call_s3_handler(handler, method, address, headers, body)
    return _as_flask_answers(method, int(status or 500), answered, content)


def _s3_handler(address: str, headers: list[tuple[str, str]]) -> Callable[..., Any] | None:
    """moto's S3 handler of a request signed for ``s3``; None for another service's, for
    a browser's (Flask-CORS would answer it too) or for a path moto's S3 does not route."""
    authorization = next((v for n, v in headers if n.lower() == "authorization"), "")
    if "/s3/aws4_request" not in authorization or any(n.lower() == "origin" for n, _ in headers):
        return None
    path = urllib.parse.urlsplit(address).path
    return next((h for pattern, h in _s3_routes() if pattern.match(path)), None)


def _call_s3_handler(
    handler: Callable[..., Any],
    method: str,
    address: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> tuple[Any, Any, str | bytes | None]:
    """The handler's status, headers and content for the request, or the error answer
    Flask (an ``HTTPException``) or moto (a ``ClientError``) would give."""
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.exceptions import HTTPException

    url = urllib.parse.urlsplit(address)
    request = BackendRequest.from_primitives(method, address, dict(headers), body)
    request.environ["RAW_URI"] = request.environ["REQUEST_URI"] = url.path + (
        f"?{url.query}" if url.query else ""
    )
    try:
        recorder._record_request(request)
        answer: tuple[Any, Any, str | bytes | None] = handler(
            request, request.raw_url, dict(request.headers)
        )
        return answer
    except HTTPException as error:  # what Flask answers for it
        return error.code, error.get_headers(), error.get_body()
    except ClientError as error:  # as moto's convert_to_flask_response
        return 400, {}, error.response["Error"]["Message"]


def _as_flask_answers(
    method: str, status: int, headers: Any, content: str | bytes | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's answer as moto's Flask application sends it (werkzeug's ``Response``):
    a ``Content-Type`` by default, Flask-CORS's ``Access-Control-Allow-Origin`` (unless
    moto's global CORS is off), a ``Content-Length`` unless the status has no content
    (the handler's own for ``HEAD``), and no body for ``HEAD``, 1xx, 204 or 304."""
    data = content.encode() if isinstance(content, str) else content or b""
    items = headers.items() if hasattr(headers, "items") else headers
    answered = _with_flask_defaults([(str(name), str(value)) for name, value in items])
    answered = _with_length(status, answered, len(data))
    empty = method == "HEAD" or 100 <= status < 200 or status in (204, 304)
    return status, answered, b"" if empty else data


def _with_flask_defaults(answered: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with Flask's default ``Content-Type`` and Flask-CORS's origin added."""
    from moto.settings import DISABLE_GLOBAL_CORS

    names = {name.lower() for name, _ in answered}
    if "content-type" not in names:
        answered.append(("Content-Type", "text/html; charset=utf-8"))
    if not DISABLE_GLOBAL_CORS and "access-control-allow-origin" not in names:
        answered.append(("Access-Control-Allow-Origin", "*"))  # Flask-CORS's, always sent
    return answered


def _with_length(
    status: int, answered: list[tuple[str, str]], length: int
) -> list[tuple[str, str]]:
    """werkzeug's length rules: no entity headers for 304, no ``Content-Length`` for 1xx
    and 204, else the content's length unless the handler gave one."""
    from werkzeug.http import remove_entity_headers

    if status == 304:
        remove_entity_headers(answered)
    elif 100 <= status < 200 or status == 204:
        answered = [(n, v) for n, v in answered if n.lower() != "content-length"]
    elif "content-length" not in {name.lower() for name, _ in answered}:
        answered.append(("Content-Length", str(length)))
    return answered


def _preserve_header_names(environ: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    """What moto's ``MotoRequestHandler.make_environ`` adds to a request's environ: the
    original spelling of headers whose names hold an underscore (S3 metadata keys)."""
    from moto.core.request import (
        PRESERVED_HEADER_NAMES_ENVIRON_KEY,
        environ_key_for_header,
        should_preserve_original_header_name,
    )

    dashed = {environ_key_for_header(name) for name, _ in headers if "_" not in name}
    names: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        if not should_preserve_original_header_name(name):
            continue
        key = environ_key_for_header(name)
        if key in dashed:
            continue
        names.setdefault(key, name)
        values.setdefault(key, []).append(value.replace("\r\n", ""))
    for key, key_values in values.items():
        environ[key] = ",".join(key_values)
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names


class Server:
    """One moto server per process, on a loopback port, shared by every engine.

    The address is chosen first and the server started separately, so an engine can
    start its workers (the fork server takes a second to import scikit-learn) meanwhile.
    """

    _lock = threading.Lock()
    _endpoint: str | None = None
    _started = False
    _admitted = threading.Event()
    _admitted.set()

    @classmethod
    def hold_clients(cls) -> None:
        """Hold every request not made by this process until :meth:`release_clients`.

        ``groveflow serve`` calls it before its engine starts and releases once its
        state machines exist. The port may open meanwhile; a client's request then
        waits (as for a slow answer) instead of finding no state machine.
        """
        cls._admitted.clear()

    @classmethod
    def release_clients(cls) -> None:
        """Answer every client's requests again, the held ones first."""
        cls._admitted.set()

    @classmethod
    def endpoint(cls, port: int | None = None) -> str:
        """The server's URL: ``port``, or a free port, chosen on first use."""
        with cls._lock:
            if cls._endpoint is None:
                if port is None:
                    with socket.socket() as probe:
                        probe.bind(("127.0.0.1", 0))
                        port = probe.getsockname()[1]
                cls._endpoint = f"http://127.0.0.1:{port}"
            elif port is not None and not cls._endpoint.endswith(f":{port}"):
                raise RuntimeError(f"the local engine already serves on {cls._endpoint}")
            return cls._endpoint

    _in_process: _InProcess | None = None

    @classmethod
    def answer(
        cls, method: str, address: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """A request to the endpoint (from a worker, through its pipe), answered in process
        by the endpoint's application, as over HTTP: status, headers and body."""
        assert cls._in_process is not None, "the server is not started"
        return cls._in_process.answer(method, address, headers, body)

    @classmethod
    def start(cls) -> None:
        """Start the server at :meth:`endpoint` unless it runs already."""
        endpoint = cls.endpoint()
        with cls._lock:
            if not cls._started:
                cls._in_process = cls._start(int(endpoint.rsplit(":", 1)[1]), cls._admitted)
                cls._started = True

    @staticmethod
    def _start(port: int, admitted: threading.Event) -> _InProcess:
        from moto.core.config import default_user_config
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        os.environ["MOTO_PORT"] = str(port)  # the interpreter's S3 reads (ItemReader) go here
        for name, value in CREDENTIALS.items():
            os.environ.setdefault(name, value)
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        # The interpreter logs every failed state with a traceback; executions report them.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_compat.apply_corrections()
        install()  # the state directories' mirrors see every object as it is stored
        # moto's ThreadedMotoServer, with other clients held while ``admitted`` is clear.
        app = _HoldClients(DomainDispatcherApplication(create_backend_app), admitted)
        # Every botocore session made from now on in this process marks its requests, and
        # has those to the endpoint answered in process.
        botocore.handlers.BUILTIN_HANDLERS.append(("before-send", _mark_own_request))
        in_process = _InProcess(app, port, admitted)
        botocore.handlers.BUILTIN_HANDLERS.append(("before-send", in_process))
        boto3.setup_default_session(region_name=REGION)
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register(
            "before-call.lambda.Invoke", cast(Any, dispatch_invoke)
        )
        server = make_server(
            "127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler
        )
        threading.Thread(
            target=server.serve_forever, name="groveflow-endpoint", daemon=True
        ).start()
        return in_process

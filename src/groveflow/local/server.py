"""The local endpoint: one moto server per process, serving S3, Step Functions and Logs.

The interpreter, the worker processes and any AWS CLI or boto3 client talk to it on a
loopback port; every engine in the process shares it (and its bucket).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, cast

import boto3

from groveflow.local import moto_compat
from groveflow.local.lambda_service import dispatch_invoke
from groveflow.local.mirror import install
from groveflow.local.template import REGION

__all__ = ["CREDENTIALS", "Server"]

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Server:
    """One moto server per process, on a loopback port, shared by every engine.

    The address is chosen first and the server started separately, so an engine can
    start its workers (the fork server takes a second to import scikit-learn) meanwhile.
    """

    _lock = threading.Lock()
    _endpoint: str | None = None
    _started = False

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

    @classmethod
    def start(cls) -> None:
        """Start the server at :meth:`endpoint` unless it runs already."""
        endpoint = cls.endpoint()
        with cls._lock:
            if not cls._started:
                cls._start(int(endpoint.rsplit(":", 1)[1]))
                cls._started = True

    @staticmethod
    def _start(port: int) -> None:
        import logging

        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        os.environ["MOTO_PORT"] = str(port)  # the interpreter's S3 reads (ItemReader) go here
        for name, value in CREDENTIALS.items():
            os.environ.setdefault(name, value)
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        # The interpreter logs every failed state with a traceback; executions report them.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_compat.apply_corrections()
        install()  # the state directories' mirrors see every object as it is stored
        boto3.setup_default_session(region_name=REGION)
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register(
            "before-call.lambda.Invoke", cast(Any, dispatch_invoke)
        )
        ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()

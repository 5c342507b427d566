"""The local Lambda service: every ``lambda:Invoke`` the interpreter makes, answered.

moto's Step Functions interpreter invokes functions through a boto3 client; the hook
:func:`dispatch_invoke` (botocore's ``before-call.lambda.Invoke``) hands each call to
the :class:`LambdaService` serving that function, which runs it on the worker pool,
with any injected fault, records it, and writes the REPORT line Lambda writes (its
peak memory, as ``Max Memory Used``, measured by the pool).
"""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from groveflow.cost import report_line
from groveflow.local.faults import FaultInjector, run_instrumented
from groveflow.local.intrinsics import ACCOUNT, REGION
from groveflow.local.logs import FunctionLogs
from groveflow.local.template import FunctionSpec, Stack, function_name_of
from groveflow.local.workers import Outcome, WorkerPool

__all__ = ["Invocation", "LambdaService", "dispatch_invoke"]


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation the engine served.

    ``memory_mb`` is the function's configured ``MemorySize`` (in MB), ``max_memory_mb``
    the peak it used (``Max Memory Used``, in MB; None where not measured, see
    :class:`~groveflow.local.workers.MemoryMonitor`).
    """

    function: str
    payload: dict[str, Any]
    output: Any
    error_type: str | None
    duration_ms: float
    memory_mb: int
    init_ms: float | None = None
    max_memory_mb: int | None = None


class LambdaService:
    """Runs the template's functions on a worker pool, as Lambda would.

    Parameters
    ----------
    stack : Stack
        The functions (template.yaml).
    pool : WorkerPool
    faults : FaultInjector or None
        Throttles, crashes and timeouts to inject (settable while running).
    on_invoke : callable or None
        Called with each :class:`Invocation` as it ends.
    """

    def __init__(
        self,
        stack: Stack,
        pool: WorkerPool,
        *,
        faults: FaultInjector | None = None,
        on_invoke: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.stack = stack
        self.pool = pool
        self.faults = faults
        self.on_invoke = on_invoke
        self.invocations: list[Invocation] = []
        self.logs = FunctionLogs(ACCOUNT, REGION)
        self.ended = threading.Event()  # an invocation ended (set for followers to clear)
        self.activity = threading.Event()  # the same, for groveflow serve's loop
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        """Answer the interpreter's invokes of these functions from now on."""
        with _registry_lock:
            for spec in self.stack.functions.values():
                _ACTIVE[spec.function_name] = self

    def close(self) -> None:
        """Stop answering them (the pool is its owner's to close)."""
        with _registry_lock:
            for spec in self.stack.functions.values():
                if _ACTIVE.get(spec.function_name) is self:
                    del _ACTIVE[spec.function_name]

    def invoke(self, logical_id: str, payload: bytes) -> Outcome:
        """Run one invocation of a template function on the worker pool."""
        spec: FunctionSpec = self.stack.function_for(logical_id)
        outcome = self._injected(spec, payload) or self.pool.invoke(spec, payload)
        record = Invocation(
            function=spec.logical_id,
            payload=json.loads(payload),
            output=json.loads(outcome.payload),
            error_type=outcome.error_type,
            duration_ms=outcome.duration_ms,
            memory_mb=spec.memory_mb,
            init_ms=outcome.init_ms,
            max_memory_mb=outcome.max_memory_mb,
        )
        with self._lock:
            self.invocations.append(record)
        line = report_line(
            outcome.duration_ms,
            spec.memory_mb,
            str(uuid.uuid4()),
            init_ms=outcome.init_ms,
            max_memory_mb=outcome.max_memory_mb,
            error_type=outcome.error_type,
        )
        self.logs.write(spec.function_name, line)
        if self.on_invoke is not None:
            self.on_invoke(record)
        self.ended.set()
        self.activity.set()
        return outcome

    def _injected(self, spec: FunctionSpec, payload: bytes) -> Outcome | None:
        """The outcome of this attempt run with its injected fault or instruments, if any.

        A throttle is raised before any handler runs, as the Invoke API does; any other
        fault, and the access record, happen to the real handler in its worker
        (see :func:`groveflow.local.faults.run_instrumented`).
        """
        if self.faults is None:
            return None
        key = f"{spec.logical_id}:{payload.decode()}"
        with self._lock:
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fault = self.faults.fault_for(spec.logical_id, json.loads(payload), attempt)
        if fault is not None and fault.kind == "throttle":
            error = {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}
            response = {
                "Error": error,
                "Reason": "ConcurrentInvocationLimitExceeded",
                "ResponseMetadata": {"HTTPStatusCode": 429, "RequestId": "groveflow-local"},
            }
            raise ClientError(cast(Any, response), "Invoke")
        if fault is None and self.faults.record_to is None:
            return None
        return run_instrumented(self.pool, spec, payload, fault, self.faults.record_to)


_ACTIVE: dict[str, LambdaService] = {}
_registry_lock = threading.Lock()


def dispatch_invoke(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """Answer an interpreter's ``lambda:Invoke`` from the service owning that function."""
    path = urllib.parse.unquote(params["url_path"])
    name = path.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]
    service = _ACTIVE.get(function_name_of(name))
    if service is None:
        raise RuntimeError(f"no local engine serves Lambda function {name!r}")
    body = params.get("body") or b"{}"
    outcome = service.invoke(name, body if isinstance(body, bytes) else body.encode())
    parsed: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "Payload": StreamingBody(io.BytesIO(outcome.payload), len(outcome.payload)),
    }
    if outcome.error_type is not None:
        parsed["FunctionError"] = "Unhandled"
    return AWSResponse(params.get("url", ""), 200, cast(Any, {}), None), parsed

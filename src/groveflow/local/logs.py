"""The functions' CloudWatch Logs, as Lambda writes them: a REPORT line per invocation.

Cost and memory are read from these lines (``Billed Duration``, ``Memory Size``,
``Init Duration``, ``Max Memory Used``, ``Error Type``), by the CLI for a run on a
stack and, through ``groveflow serve``, for a local one. The lines go straight into the
moto server's logs backend in this process, the one every client reads through the
endpoint: one HTTP round trip to our own server per invocation cost a 10,000-grove run
about 5 ms per grove of the CPU the workers need.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["LOG_STREAM", "FunctionLogs"]

LOG_STREAM = "groveflow-local/[$LATEST]worker-pool"


class FunctionLogs:
    """Log groups ``/aws/lambda/<function name>``, created on first use.

    Parameters
    ----------
    account : str
    region : str
    """

    def __init__(self, account: str, region: str) -> None:
        self.account = account
        self.region = region
        self._lock = threading.Lock()
        self._groups: set[str] = set()

    def _backend(self) -> Any:
        from moto.logs.models import logs_backends

        return logs_backends[self.account][self.region]

    def write(self, function_name: str, message: str) -> None:
        """Append one line to the function's log stream, as Lambda's runtime does."""
        group = f"/aws/lambda/{function_name}"
        event = {"timestamp": int(time.time() * 1000), "message": message}
        with self._lock:  # moto's backend is not thread-safe
            backend = self._backend()
            if group not in self._groups:
                if group not in backend.groups:
                    backend.create_log_group(group, tags={})
                if LOG_STREAM not in backend.groups[group].streams:
                    backend.create_log_stream(group, LOG_STREAM)
                self._groups.add(group)
            backend.put_log_events(group, LOG_STREAM, [event])

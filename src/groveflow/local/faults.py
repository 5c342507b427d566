"""Fault injection for the local engine: throttles, crashes and timeouts on purpose.

Each fault surfaces to the interpreter exactly as Lambda's would: a throttle as
the ``TooManyRequestsException`` the Invoke API raises (``Lambda.TooManyRequestsException``
in Step Functions), a crash as an unhandled ``Runtime.ExitError`` function
error, a timeout as ``Sandbox.Timedout`` after the function's timeout. Draws
are seeded by the invocation's payload and attempt number, so a run's faults
are the same whatever the concurrency.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_KINDS", "FaultInjector", "parse_faults"]

FAULT_KINDS = ("throttle", "crash", "timeout")


@dataclass(frozen=True)
class FaultInjector:
    """Probabilities (0-1) of each fault per invocation.

    Parameters
    ----------
    throttle, crash, timeout : float, default=0
    seed : int, default=0
    functions : tuple of str, default=("BuildGroveFunction",)
        Logical ids of the functions faults apply to.
    """

    throttle: float = 0.0
    crash: float = 0.0
    timeout: float = 0.0
    seed: int = 0
    functions: tuple[str, ...] = ("BuildGroveFunction",)

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> str | None:
        """The fault for this attempt of this invocation, or None to run it normally."""
        if function not in self.functions:
            return None
        text = json.dumps([self.seed, function, payload, attempt], sort_keys=True)
        draw = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
        for kind in FAULT_KINDS:
            probability = getattr(self, kind)
            if draw < probability:
                return kind
            draw -= probability
        return None


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

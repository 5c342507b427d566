"""How many grove builders a run may start at once: what the account or the stack leaves.

A Distributed Map at ``max_concurrency`` 1,000 would take a default account's whole Lambda
concurrency, throttling every other function in it (another run's Plan and Merge included).
The plan clamps ``max_concurrency`` to the builders' reserved concurrency when the stack sets
one (``BuilderReservedConcurrency``: no more can run), else to the account's unreserved
concurrency (``lambda:GetAccountSettings``) less a headroom for the other stages, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groveflow import telemetry
from groveflow.fan_out import fan_out_concurrency

__all__ = [
    "HEADROOM_FRACTION",
    "MIN_HEADROOM",
    "ConcurrencyLimit",
    "concurrency_limit",
    "fan_out_report",
    "unreserved_concurrency",
]

MIN_HEADROOM = 10
"""Concurrent executions (at least) the plan leaves to the rest of the account: this run's
Merge, other runs' Plan and Merge, the account's other functions."""
HEADROOM_FRACTION = 0.1
"""Share of the account's unreserved concurrency left to the rest, when above MIN_HEADROOM."""


@dataclass(frozen=True)
class ConcurrencyLimit:
    """The most builders a run may start at once, and why (None: no limit known)."""

    builders: int | None
    why: str | None


def unreserved_concurrency(client: Any = None) -> int | None:
    """The account's ``UnreservedConcurrentExecutions`` (``lambda:GetAccountSettings``), or
    None when it cannot be read (no permission, an endpoint that does not serve it): the run
    is then not clamped by it.

    ``client`` : a boto3 Lambda client; a new one (the standard environment: region,
    credentials, ``AWS_ENDPOINT_URL``) if None.
    """
    try:
        if client is None:
            import boto3  # the plan's only Lambda call: not imported by every handler
            from botocore.config import Config

            config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2})
            client = boto3.client("lambda", config=config)
        settings = client.get_account_settings()
        return int(settings["AccountLimit"]["UnreservedConcurrentExecutions"])
    except Exception as error:  # any failure leaves the run as requested, and is logged
        telemetry.logger.info(
            "the account's unreserved concurrency could not be read",
            extra={"error": f"{type(error).__name__}: {error}"},
        )
        return None


def concurrency_limit(
    builder_reserved_concurrency: int | None,
    account_concurrency: Callable[[], int | None] | None,
) -> ConcurrencyLimit:
    """The builders' limit: their reserved concurrency when set (the account's unreserved
    pool does not serve them), else the account's unreserved concurrency less its headroom
    (``max(MIN_HEADROOM, HEADROOM_FRACTION x unreserved)``), else none.

    ``account_concurrency`` : reads the account's unreserved concurrency (e.g.
    :func:`unreserved_concurrency`); None reads nothing.
    """
    if builder_reserved_concurrency:
        return ConcurrencyLimit(
            builder_reserved_concurrency,
            f"the stack reserves {builder_reserved_concurrency:,} builders "
            "(BuilderReservedConcurrency): more would only be throttled",
        )
    unreserved = account_concurrency() if account_concurrency is not None else None
    if unreserved is None:
        return ConcurrencyLimit(None, None)
    headroom = max(MIN_HEADROOM, int(unreserved * HEADROOM_FRACTION))
    builders = max(1, unreserved - headroom)
    return ConcurrencyLimit(
        builders,
        f"the account leaves {unreserved:,} concurrent executions unreserved "
        f"(lambda:GetAccountSettings), less {headroom:,} for the Plan, Merge and other "
        "functions it runs; more would throttle them",
    )


def fan_out_report(requested: int, n_groves: int, limit: ConcurrencyLimit) -> dict[str, Any]:
    """The Map's concurrency for ``n_groves`` groves (``max_concurrency``) and what the run
    summary says of it: the request's, clamped to the groves and to ``limit``."""
    chosen = fan_out_concurrency(requested, items=n_groves, limit=limit.builders)
    why = None
    clamped = f"max_concurrency {requested:,} clamped to {chosen:,}"
    if chosen < requested and limit.builders is not None and chosen == limit.builders:
        why = f"{clamped}: {limit.why}"
    elif chosen < requested:
        why = f"{clamped}: only {n_groves:,} grove{'' if n_groves == 1 else 's'} to build"
    return {"requested": requested, "max_concurrency": chosen, "why": why}

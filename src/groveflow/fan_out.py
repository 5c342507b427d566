"""How many children a Map runs at once: the one clamp of every fan-out (groves, a search's
rounds, prediction shards) and of the estimates made of them.

At the bottom of the package (it imports nothing), so the plan, the search, the prediction
and the cost model all clamp the same way.
"""

from __future__ import annotations

__all__ = ["fan_out_concurrency"]


def fan_out_concurrency(
    requested: int, *, items: int | None = None, limit: int | None = None
) -> int:
    """The Map's ``MaxConcurrency``: the request's ``max_concurrency`` clamped to the items
    it runs and to a limit.

    Parameters
    ----------
    requested : int
        The request's ``max_concurrency``.
    items : int or None, default=None
        Children the Map runs (groves, shards); at least 1 is returned, since a
        ``MaxConcurrency`` of 0 means no limit at all. None: not clamped by them.
    limit : int or None, default=None
        The most that may run at once (the builders' reserved concurrency, or what the
        account leaves); None or 0: no limit.

    Returns
    -------
    int
        ``min(requested, max(1, items), limit)``, leaving out what is not given.
    """
    most = min(requested, limit or requested)
    return most if items is None else min(most, max(1, items))

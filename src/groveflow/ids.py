"""The one rule for run and prediction ids, applied before anything touches disk or S3.

A run id names ``runs/<run_id>/`` in the bucket and a folder under the local state
directory; a prediction id names ``predictions/<prediction_id>/``. Both must be safe as
an S3 key segment, a file name on every platform and a Step Functions execution name:
1 to 80 ASCII letters, digits, ``-`` or ``_``, starting with a letter or digit.
"""

from __future__ import annotations

import re
import time
import unicodedata

from groveflow.errors import InvalidRequest

__all__ = ["ACCEPTED", "ID_PATTERN", "MAX_ID_LENGTH", "check_id", "default_id", "is_valid_id"]

MAX_ID_LENGTH = 80
ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_ID_LENGTH - 1}}}$")
ACCEPTED = "1-80 letters (A-Z, a-z), digits, '-' or '_', starting with a letter or digit"


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is an accepted run or prediction id."""
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


def check_id(
    value: object, *, name: str = "run_id", error: type[Exception] = InvalidRequest
) -> str:
    """Return ``value`` if it is an accepted id, else raise ``error`` naming it.

    Parameters
    ----------
    value : object
        The id as given (by ``--run-id``, the input's ``run_id`` or ``prediction_id``).
    name : str, default="run_id"
        What the id is called where the user gave it, for the message.
    error : type of Exception, default=InvalidRequest
    """
    if is_valid_id(value):
        assert isinstance(value, str)
        return value
    shown = (
        repr(value)
        if not isinstance(value, str) or len(value) <= 100
        else (f"{value[:60]!r}... ({len(value)} characters)")
    )
    raise error(f"{name}={shown} is not accepted: use {ACCEPTED}")


def default_id(stem: str, now: float | None = None) -> str:
    """An id made from an input file's name and the time, always accepted.

    ``my digits.json`` at 2026-12-01 10:00:00 gives ``my-digits-20261201-100000``;
    accents are dropped (``données`` -> ``donnees``), every other character outside the
    accepted set becomes ``-``, and a name with nothing usable gives ``run-<time>``.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_stem).strip("-_")
    cleaned = re.sub(r"-{2,}", "-", cleaned) or "run"
    room = MAX_ID_LENGTH - len(stamp) - 1
    return f"{cleaned[:room].rstrip('-_')}-{stamp}"

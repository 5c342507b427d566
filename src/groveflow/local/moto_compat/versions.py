"""The moto versions the corrections are tested against, and the refusal of any other."""

from __future__ import annotations

import re

from groveflow.errors import GroveflowError

__all__ = [
    "TESTED_MOTO_RANGE",
    "UnsupportedMotoVersion",
    "check_moto_version",
]

TESTED_MOTO_RANGE = ((5, 2, 3), (5, 3, 0))
"""Moto versions the corrections are tested against: ``>=5.2.3,<5.3``."""


class UnsupportedMotoVersion(GroveflowError):
    """The installed moto is outside the range the corrections were tested against."""


def check_moto_version(version: str) -> None:
    """Refuse a moto outside :data:`TESTED_MOTO_RANGE` (``version``: ``moto.__version__``)."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    parsed = tuple(int(part) for part in match.groups()) if match else None
    low, high = TESTED_MOTO_RANGE
    if parsed is None or not low <= parsed < high:
        raise UnsupportedMotoVersion(
            f"moto=={version} is not supported by groveflow's local engine; "
            "install moto>=5.2.3,<5.3 (the range its interpreter corrections are tested on)"
        )

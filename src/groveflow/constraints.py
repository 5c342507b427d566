"""Declared constraints on input values, and the one function that checks them.

Each input section (the training request's top level, ``data``, ``model``, ``predict``,
``search``, ``data.categorical``) declares what each of its keys accepts as a table
``{key: constraint}``, as scikit-learn's estimators declare ``_parameter_constraints``;
:func:`check_section` refuses an unknown key (suggesting the closest accepted one) and
:func:`check_value` a value its constraint does not accept, each with a message that
names the key, the value and what would be accepted.

This module imports nothing of groveflow but its errors: every module may use it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from groveflow.errors import InvalidRequest

__all__ = [
    "Boolean",
    "Columns",
    "Constraint",
    "Interval",
    "Maybe",
    "Options",
    "Rule",
    "Text",
    "check_keys",
    "check_section",
    "check_value",
    "is_integer",
    "is_number",
]

_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def is_integer(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an integer as JSON gives one (``True`` and ``1.0`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an integer or a float that is not NaN (``True`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Interval:
    """An integer (``kind=int``) or a number (``kind=float``) between ``low`` and ``high``.

    Parameters
    ----------
    kind : {int, float}
        ``int`` accepts integers only; ``float`` integers and floats, never NaN.
    low, high : int or float or None
        The bounds, shown in messages as given; None: unbounded on that side.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds are accepted values.
    message : str or None, default=None
        What a refused value reads instead of the standard message, formatted with
        ``name`` and ``value`` (for a rule whose wording users rely on).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    message: str | None = None

    def typed(self, value: Any) -> bool:
        return is_integer(value) if self.kind is int else is_number(value)

    def within(self, value: Any) -> bool:
        above = self.low is None or value > self.low or (value == self.low and self._closed(0))
        below = self.high is None or value < self.high or (value == self.high and self._closed(1))
        return above and below

    def _closed(self, side: int) -> bool:
        return self.closed in (("both", "left"), ("both", "right"))[side]

    def _side(self) -> str:
        """``2 or more``, ``more than 0``, ``at most 9``, ``less than 1``."""
        if self.low is not None:
            return f"{self.low} or more" if self._closed(0) else f"more than {self.low}"
        return f"at most {self.high}" if self._closed(1) else f"less than {self.high}"

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is None and self.high is None:
            return noun
        if self.low is not None and self.high is not None:
            left, right = _BRACKETS[self.closed][0], _BRACKETS[self.closed][1]
            return f"{noun} in {left}{self.low}, {self.high}{right}"
        return f"{noun} of {self._side()}"

    def problem(self, name: str, value: Any) -> str | None:
        if self.typed(value) and self.within(value):
            return None
        if self.message is not None:
            return self.message.format(name=name, value=value)
        if not self.typed(value):
            return f"{name} must be {self.describe()}, got {value!r}"
        return f"{name}={value} is out of range; {name} must be {self.describe()}"


@dataclass(frozen=True)
class Options:
    """One of ``accepted`` (compared with ``==``, so ``True`` is not ``1``'s option)."""

    accepted: tuple[Any, ...]
    message: str | None = None

    def problem(self, name: str, value: Any) -> str | None:
        if any(value == option and type(value) is type(option) for option in self.accepted):
            return None
        if self.message is not None:
            return self.message.format(name=name, value=value, accepted=list(self.accepted))
        return f"{name}={value!r} is not supported; accepted: {list(self.accepted)}"


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    def problem(self, name: str, value: Any) -> str | None:
        if isinstance(value, bool):
            return None
        return f"{name} must be true or false, got {value!r}"


@dataclass(frozen=True)
class Text:
    """A non-empty string (``what`` names it in the message: ``a column name``)."""

    what: str = "a non-empty string"

    def problem(self, name: str, value: Any) -> str | None:
        if isinstance(value, str) and value:
            return None
        return f"{name} must be {self.what}, got {value!r}"


@dataclass(frozen=True)
class Columns:
    """A list of column names, none empty, none twice (or ``"auto"``, when ``auto``)."""

    auto: bool = False

    def problem(self, name: str, value: Any) -> str | None:
        if self.auto and value == "auto":
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            what = "'auto' or a list of column names" if self.auto else "a list of column names"
            return f"{name} must be {what}, got {value!r}"
        if len(set(value)) != len(value):
            return f"{name} lists a column twice: {value!r}"
        return None


@dataclass(frozen=True)
class Rule:
    """A constraint no other kind states: ``accepts(value)``, and ``message`` (formatted with
    ``name`` and ``value``) when it does not."""

    accepts: Callable[[Any], bool]
    message: str

    def problem(self, name: str, value: Any) -> str | None:
        return None if self.accepts(value) else self.message.format(name=name, value=value)


@dataclass(frozen=True)
class Maybe:
    """None (the key's default), or what ``constraint`` accepts."""

    constraint: Interval | Options | Boolean | Text | Columns | Rule

    def problem(self, name: str, value: Any) -> str | None:
        return None if value is None else self.constraint.problem(name, value)


Constraint = Interval | Options | Boolean | Text | Columns | Rule | Maybe


def check_value(
    name: str, value: Any, constraint: Constraint, error: type[Exception] = InvalidRequest
) -> Any:
    """``value`` if ``constraint`` accepts it; else ``error`` naming ``name``, the value and
    what is accepted. A float accepted by an ``Interval(float, ...)`` is returned as one."""
    problem = constraint.problem(name, value)
    if problem is not None:
        raise error(problem)
    inner = constraint.constraint if isinstance(constraint, Maybe) else constraint
    if isinstance(inner, Interval) and inner.kind is float and value is not None:
        return float(value)
    return value


def check_keys(
    section: str,
    value: Mapping[str, Any],
    allowed: Collection[str],
    error: type[Exception] = InvalidRequest,
) -> None:
    """Refuse keys outside ``allowed``, suggesting the closest accepted key."""
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise error(
                f"unknown key {key!r} in {section}{hint} "
                f"Accepted keys: {', '.join(sorted(allowed))}"
            )


def check_section(
    section: str,
    value: Mapping[str, Any],
    table: Mapping[str, Constraint | None],
    *,
    prefix: str = "",
    error: type[Exception] = InvalidRequest,
) -> None:
    """Check a section against its table: no key outside it, and every key given accepted
    by its constraint. A key whose constraint is None is checked by its section's parser
    (a nested section, a value whose bounds depend on another key).

    ``section`` names the section in the unknown-key message; ``prefix`` (``"data."``)
    is put before each key in the others."""
    check_keys(section, value, table, error)
    for key, given in value.items():
        constraint = table[key]
        if constraint is not None:
            check_value(prefix + key, given, constraint, error)

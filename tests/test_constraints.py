"""The one checker of declared constraints (groveflow.constraints): what each kind accepts and
the message that names the key, the value and what is accepted."""

from __future__ import annotations

import math
from typing import Any

import pytest

from groveflow.constraints import (
    Boolean,
    Columns,
    Interval,
    Maybe,
    Options,
    Text,
    check_section,
    check_value,
)
from groveflow.errors import InvalidPredictRequest, InvalidRequest


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "n must be an integer in [1, 10], got '3'"),
        (True, "n must be an integer in [1, 10], got True"),
        (2.0, "n must be an integer in [1, 10], got 2.0"),
        (0, "n=0 is out of range; n must be an integer in [1, 10]"),
        (11, "n=11 is out of range; n must be an integer in [1, 10]"),
    ],
)
def test_an_integer_interval_names_the_key_the_value_and_the_range(
    value: Any, message: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_value("n", value, Interval(int, 1, 10))
    assert str(raised.value) == message


def test_a_number_interval_takes_integers_as_floats_and_refuses_nan_and_open_bounds() -> None:
    fraction = Interval(float, 0, 1, closed="neither")
    assert check_value("f", 1, Interval(float, 0, 1)) == 1.0
    assert isinstance(check_value("f", 1, Interval(float, 0, 1)), float)
    for bad in (0, 1, math.nan, "0.5", False):
        with pytest.raises(InvalidRequest, match=r"f.* a number in \(0, 1\)"):
            check_value("f", bad, fraction)


def test_one_sided_interval_and_a_stated_message() -> None:
    with pytest.raises(
        InvalidRequest, match=r"^k=1 is out of range; k must be an integer of 2 or more$"
    ):
        check_value("k", 1, Interval(int, 2))
    cap = Interval(float, 0, math.inf, closed="neither", message="{name} is bad: {value!r}")
    with pytest.raises(InvalidRequest, match=r"^c is bad: inf$"):
        check_value("c", math.inf, cap)


def test_options_text_boolean_columns_and_maybe() -> None:
    assert check_value("s", None, Maybe(Text())) is None
    cases = [
        (Options(("a", "b")), "c", "s='c' is not supported; accepted: ['a', 'b']"),
        (Options((1,)), True, "s=True is not supported; accepted: [1]"),
        (Text(), "", "s must be a non-empty string, got ''"),
        (Boolean(), 1, "s must be true or false, got 1"),
        (Columns(), "a", "s must be a list of column names, got 'a'"),
        (Columns(), ["a", "a"], "s lists a column twice: ['a', 'a']"),
        (Columns(auto=True), 3, "s must be 'auto' or a list of column names, got 3"),
    ]
    for constraint, value, message in cases:
        with pytest.raises(InvalidRequest) as raised:
            check_value("s", value, constraint)
        assert str(raised.value) == message
    assert check_value("s", "auto", Columns(auto=True)) == "auto"


def test_a_section_refuses_an_unknown_key_with_a_suggestion_and_a_bad_value_by_its_path() -> None:
    table = {"shard_rows": Interval(int, 1, 100), "data": None}
    # GIVEN a misspelt key
    with pytest.raises(
        InvalidPredictRequest, match=r"unknown key 'shard_row' in req; did you mean 'shard_rows'\?"
    ):
        check_section("req", {"shard_row": 1}, table, error=InvalidPredictRequest)
    # a value out of range, named with the section's prefix
    with pytest.raises(InvalidRequest, match=r"^p\.shard_rows=0 is out of range"):
        check_section("req", {"shard_rows": 0}, table, prefix="p.")
    # a key whose constraint is None is left to its parser
    check_section("req", {"data": object(), "shard_rows": 5}, table)

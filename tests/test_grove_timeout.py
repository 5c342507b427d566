"""A grove predicted to take near the builders' Timeout is refused before any grove: a timed-out
grove is retried as a transient fault (up to 60 times), each attempt billed to its Timeout."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from conftest import ROOT
from groveflow.api import estimate
from groveflow.errors import DatasetTooLarge
from groveflow.local.template import read_template
from groveflow.request import parse_train_request
from groveflow.training._sizing import BUILDER_TIMEOUT_SECONDS, check_grove_fits

IRIS = {"data": {"uri": "sklearn:iris"}, "n_trees": 200, "grove_size": 100}


def test_the_builders_timeout_is_the_templates() -> None:
    template = read_template(ROOT / "template.yaml")
    builder = template["Resources"]["BuildGroveFunction"]["Properties"]
    assert builder.get("Timeout", template["Globals"]["Function"]["Timeout"]) == (
        BUILDER_TIMEOUT_SECONDS
    )


def test_a_grove_predicted_past_half_the_timeout_is_refused_naming_the_fix() -> None:
    # GIVEN the plan's estimate of a run, as if its trial grove had taken 10 s a tree
    planned = estimate(IRIS, workers=2)
    request = parse_train_request(IRIS)
    slow = replace(planned, seconds_per_tree=10.0)
    # THEN the quick run passes, and the slow one is refused by name with the grove size that fits
    check_grove_fits(request, planned)
    with pytest.raises(DatasetTooLarge) as refused:
        check_grove_fits(request, slow)
    message = str(refused.value)
    assert message.startswith("a grove of 100 trees is predicted to take about 1")
    assert f"Timeout of {BUILDER_TIMEOUT_SECONDS} s" in message
    # 450 s at a little over 10 s a tree (its share of the grove's overhead and read)
    assert re.search(r"lower grove_size to 4[0-5] or fewer$", message), message
    # AND a grove of one such tree too slow for any grove size names the other fixes
    with pytest.raises(DatasetTooLarge, match="shallower trees"):
        check_grove_fits(request, replace(planned, seconds_per_tree=1000.0))

"""One data-section parser for training and prediction: the same rules, the same words."""

from __future__ import annotations

import re
from typing import Any

import pytest

from groveflow.errors import InvalidPredictRequest, InvalidRequest
from groveflow.prediction import parse_predict_request
from groveflow.request import parse_train_request


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"uri": "rows.csv", "format": "xls"}, "data.format='xls' is not supported; accepted:"),
        ({"uri": "rows.csv", "delimiter": "ab"}, "data.delimiter must be one character"),
        ({"uri": "rows.csv", "delimiter": '"'}, "data.delimiter must be one character"),
        ({"uri": "rows.csv", "exclude": "id"}, "data.exclude must be a list of column names"),
        ({"uri": "rows.csv", "exclude": ["a", "a"]}, "data.exclude lists a column twice"),
    ],
)
def test_a_bad_data_section_is_refused_alike_for_training_and_prediction(
    data: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(words)):
        parse_train_request({"data": data})
    with pytest.raises(InvalidPredictRequest, match=re.escape(words)):
        parse_predict_request({"model": "m", "data": data})


def test_a_prediction_data_section_has_no_target_and_a_named_id_column() -> None:
    with pytest.raises(InvalidPredictRequest, match="unknown key 'target'"):
        parse_predict_request({"model": "m", "data": {"uri": "rows.csv", "target": "y"}})
    with pytest.raises(InvalidPredictRequest, match=r"data\.id_column must be a column name"):
        parse_predict_request({"model": "m", "data": {"uri": "rows.csv", "id_column": 3}})
    parsed = parse_predict_request(
        {"model": "m", "data": {"uri": "rows.tsv", "delimiter": "\t", "id_column": "id"}}
    )
    assert parsed.data["id_column"] == "id"

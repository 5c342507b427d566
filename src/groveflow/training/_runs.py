"""What every stage of a run reads alike: its record, its grove list, a stored grove's check."""

from __future__ import annotations

from typing import Any

import numpy as np

from groveflow import artifact, storage
from groveflow.documents import GroveTask, RunRecord, check_search
from groveflow.errors import (
    ArtifactError,
    GroveMismatch,
    InvalidRequest,
)
from groveflow.ids import ACCEPTED, is_valid_id
from groveflow.layout import grove_seeds, keys
from groveflow.request import TrainRequest

SPLITS = ("X_train", "y_train", "X_test", "y_test")


def run_id_from(execution_name: Any) -> str:
    """The run id of a request without one: the execution's name, if the id rule accepts it."""
    if not isinstance(execution_name, str) or not execution_name:
        raise InvalidRequest("the request has no run_id and the execution has no name")
    if not is_valid_id(execution_name):
        raise InvalidRequest(
            f"the request has no run_id and the execution name {execution_name!r} is not an "
            f"accepted run id ({ACCEPTED}): give run_id in the input"
        )
    return execution_name


def _stored_record(bucket: str, run_id: str) -> RunRecord | None:
    try:
        return _read_record(bucket, run_id)
    except FileNotFoundError:
        return None


def _read_record(bucket: str, run_id: str) -> RunRecord:
    """The run's record, validated; FileNotFoundError if the run id is not claimed."""
    where = f"the run record s3://{bucket}/{keys.request(run_id)}"
    return RunRecord.from_dict(storage.get_json(bucket, keys.request(run_id)), where)


def stored_search(bucket: str, search_id: str) -> dict[str, Any] | None:
    """A search's document (``runs/<search>/search.json``: candidates, schedule, scores and,
    once it has one, its winner's run as ``model_run_id``), or None if no search has the id."""
    key = keys.search(search_id)
    try:
        value = storage.get_json(bucket, key)
    except FileNotFoundError:
        return None
    return check_search(value, f"s3://{bucket}/{key}")


def grove_plan(request: TrainRequest, run_id: str) -> list[dict[str, Any]]:
    """Every grove of the run, in order: a pure function of the request, so the merge
    rebuilds it instead of trusting a stored list."""
    seeds = grove_seeds(request.seed, request.n_groves)
    return [
        GroveTask(run_id, i, seed, _grove_trees(request, i)).to_item()
        for i, seed in enumerate(seeds)
    ]


RUN_SETTINGS = ("predict", "max_cost_usd", "max_concurrency", "tolerated_failure_percentage")
"""Request keys that do not decide a run's model: a resume may change them."""

RUN_DEFAULTS = ("grove_size", "round_trees")
"""Keys whose default follows other keys (``grove_size=min(10, n_trees)``,
``round_trees=min(50, max_trees)``): an input that leaves one out, for a claimed run, takes
the run's value, so a run grown with more trees keeps its groves."""

GROWTH_KEYS = ("n_trees", "max_trees")
"""Keys a claimed run's input may raise: ``n_trees`` grows a forest, ``max_trees`` lets an
``n_trees="auto"`` forest grow further."""

_ABSENT = object()


def _model_inputs(request: dict[str, Any], left_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """What decides a run's model: the request less :data:`RUN_SETTINGS`, its ``run_id``
    (the run is the same one whether its input or its execution's name gave the id) and
    ``left_out`` (keys of :data:`RUN_DEFAULTS` the input left to the run)."""
    ignored = (*RUN_SETTINGS, "run_id", *left_out)
    return {key: value for key, value in request.items() if key not in ignored}


def request_differences(before: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys (dotted: ``model.params.max_depth``) whose values differ between two
    requests, with each value before and now (``_ABSENT`` where a request lacks the key)."""
    differences: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            for inner, values in request_differences(old, new).items():
                differences[f"{key}.{inner}"] = values
        elif old != new or type(old) is not type(new):
            differences[key] = (old, new)
    return differences


def describe_difference(key: str, values: tuple[Any, Any]) -> str:
    """``seed (17 before, 18 now)``: a key that differs, as a refusal names it."""
    old, new = ("absent" if value is _ABSENT else repr(value) for value in values)
    return f"{key} ({old} before, {new} now)"


def _grove_trees(request: TrainRequest, grove: int) -> int:
    return min(request.grove_size, request.n_trees - grove * request.grove_size)


def split_run(bucket: str, run_id: str) -> str:
    """The run whose split ``run_id`` trains on: the one its ``data/source.json`` names (a
    search's candidates share the search's split), else its own."""
    try:
        source = storage.get_json(bucket, keys.split_source(run_id))
    except FileNotFoundError:
        return run_id
    if not isinstance(source, dict) or not is_valid_id(source.get("run_id")):
        raise ArtifactError(f"{keys.split_source(run_id)} does not name a run: {source!r}")
    return str(source["run_id"])


def _check_grove(grove: artifact.Forest, item: dict[str, Any], record: RunRecord) -> None:
    number = item["grove"]
    if grove.n_trees != item["n_trees"]:
        raise GroveMismatch(
            f"grove {number} has {grove.n_trees} trees; the plan says {item['n_trees']}"
        )
    if grove.n_features_in_ != record.data.n_features:
        raise GroveMismatch(
            f"grove {number} has {grove.n_features_in_} features; "
            f"the data has {record.data.n_features}"
        )
    classes = None if grove.classes_ is None else grove.classes_.tolist()
    if classes != record.classes:
        raise GroveMismatch(f"grove {number} has classes {classes}; the data has {record.classes}")


def read_split(bucket: str, run_id: str, name: str) -> np.ndarray:
    """One of a run's stored split arrays (``X_train``, ``y_train``, ``X_test``, ``y_test``);
    ``run_id`` is the run whose split it is (:func:`split_run` says which for a candidate)."""
    return storage.read_npy(storage.get_bytes(bucket, keys.split(run_id, name)))

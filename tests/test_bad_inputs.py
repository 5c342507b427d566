"""A catalogue of bad training inputs: each fails at Plan or Ingest, named, before any fan-out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from groveflow.layout import keys

DIGITS = {"uri": "sklearn:digits"}


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def _files(directory: Path) -> dict[str, str]:
    """Bad dataset files, written fresh for the test."""
    rng = np.random.default_rng(0)
    good_rows = "\n".join(
        f"{a:.3f},{b:.3f},{'yes' if a > 0 else 'no'}" for a, b in rng.normal(size=(40, 2))
    )
    garbage = directory / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY this is not an array")
    return {
        "garbage_npy": str(garbage),
        "header_only": _write(directory, "header_only.csv", "a,b,label\n"),
        "text_feature": _write(
            directory,
            "text.csv",
            "a,colour,label\n" + "\n".join(f"{i},red,{i % 2}" for i in range(20)),
        ),
        "infinite": _write(
            directory,
            "inf.csv",
            "a,b,label\n" + "\n".join(f"{i},{'inf' if i == 3 else i},{i % 2}" for i in range(20)),
        ),
        "nan_target": _write(
            directory,
            "nan_target.csv",
            "a,b,label\n" + "\n".join(f"{i},{i},{'' if i == 5 else i % 2}" for i in range(20)),
        ),
        "single_class": _write(
            directory, "single.csv", "a,b,label\n" + "\n".join(f"{i},{i},same" for i in range(20))
        ),
        "tiny": _write(directory, "tiny.csv", "a,b,label\n1,2,x\n3,4,y\n5,6,x\n"),
        "good": _write(directory, "good.csv", "a,b,label\n" + good_rows),
        "ragged": _write(directory, "ragged.csv", "a,b,label\n1,2,x\n3,4\n"),
        "no_extension": _write(directory, "data.bin", "a,b,label\n1,2,x\n"),
    }


# (case id, execution input (paths filled in from _files), expected Error, words the Cause must hold)
CASES: list[tuple[str, Any, str, str]] = [
    ("input-not-an-object", [1, 2], "InvalidRequest", "JSON object"),
    (
        "misspelled-top-key",
        {"data": DIGITS, "n_tree": 10},
        "InvalidRequest",
        "did you mean 'n_trees'",
    ),
    (
        "unknown-data-key",
        {"data": {"url": "sklearn:digits"}},
        "InvalidRequest",
        "did you mean 'uri'",
    ),
    (
        "unknown-model-key",
        {"data": DIGITS, "model": {"param": {}}},
        "InvalidRequest",
        "did you mean 'params'",
    ),
    (
        "n-trees-string",
        {"data": DIGITS, "n_trees": "100"},
        "InvalidRequest",
        "n_trees must be an integer",
    ),
    ("n-trees-zero", {"data": DIGITS, "n_trees": 0}, "InvalidRequest", "n_trees=0"),
    ("n-trees-negative", {"data": DIGITS, "n_trees": -5}, "InvalidRequest", "n_trees=-5"),
    ("n-trees-absurd", {"data": DIGITS, "n_trees": 10**9}, "InvalidRequest", "n_trees=1000000000"),
    (
        "n-trees-bool",
        {"data": DIGITS, "n_trees": True},
        "InvalidRequest",
        "n_trees must be an integer",
    ),
    ("grove-size-zero", {"data": DIGITS, "grove_size": 0}, "InvalidRequest", "grove_size=0"),
    (
        "grove-larger-than-forest",
        {"data": DIGITS, "n_trees": 10, "grove_size": 20},
        "InvalidRequest",
        "larger than n_trees",
    ),
    (
        "too-many-groves",
        {"data": DIGITS, "n_trees": 100000, "grove_size": 1},
        "InvalidRequest",
        "raise grove_size",
    ),
    ("seed-negative", {"data": DIGITS, "seed": -1}, "InvalidRequest", "seed=-1"),
    ("seed-fractional", {"data": DIGITS, "seed": 1.5}, "InvalidRequest", "seed must be an integer"),
    (
        "test-fraction-too-big",
        {"data": DIGITS, "test_fraction": 1.5},
        "InvalidRequest",
        "test_fraction=1.5",
    ),
    (
        "test-fraction-string",
        {"data": DIGITS, "test_fraction": "0.2"},
        "InvalidRequest",
        "test_fraction must be a number",
    ),
    (
        "concurrency-zero",
        {"data": DIGITS, "max_concurrency": 0},
        "InvalidRequest",
        "max_concurrency=0",
    ),
    (
        "tolerance-over-100",
        {"data": DIGITS, "tolerated_failure_percentage": 150},
        "InvalidRequest",
        "tolerated_failure_percentage=150",
    ),
    (
        "unknown-model-kind",
        {"data": DIGITS, "model": {"kind": "gradient_boosting"}},
        "InvalidRequest",
        "random_forest",
    ),
    (
        "unknown-task",
        {"data": DIGITS, "model": {"task": "clustering"}},
        "InvalidRequest",
        "regression",
    ),
    (
        "misspelled-hyperparameter",
        {"data": DIGITS, "model": {"params": {"max_dept": 3}}},
        "InvalidRequest",
        "did you mean 'max_depth'",
    ),
    (
        "negative-max-depth",
        {"data": DIGITS, "model": {"params": {"max_depth": -1}}},
        "InvalidRequest",
        "max_depth",
    ),
    (
        "unknown-criterion",
        {"data": DIGITS, "model": {"params": {"criterion": "banana"}}},
        "InvalidRequest",
        "criterion",
    ),
    (
        "managed-parameter",
        {"data": DIGITS, "model": {"params": {"n_estimators": 5}}},
        "InvalidRequest",
        "n_estimators",
    ),
    (
        "max-samples-without-bootstrap",
        {"data": DIGITS, "model": {"params": {"bootstrap": False, "max_samples": 0.5}}},
        "InvalidRequest",
        "bootstrap",
    ),
    (
        "class-weight-for-regression",
        {
            "data": {"uri": "sklearn:diabetes"},
            "model": {"task": "regression", "params": {"class_weight": "balanced"}},
        },
        "InvalidRequest",
        "class_weight",
    ),
    ("no-data-section", {"n_trees": 10}, "InvalidRequest", "no 'data' section"),
    ("no-data-uri", {"data": {"target": "label"}}, "InvalidRequest", "data.uri is missing"),
    (
        "bad-run-id",
        {"data": DIGITS, "run_id": "has spaces"},
        "InvalidRequest",
        "run_id='has spaces'",
    ),
    (
        "unknown-format",
        {"data": {"uri": "{good}", "format": "xlsx", "target": "label"}},
        "InvalidRequest",
        "xlsx",
    ),
    (
        "unknown-bundled-dataset",
        {"data": {"uri": "sklearn:nope"}},
        "DatasetNotFound",
        "sklearn:nope",
    ),
    (
        "missing-local-file",
        {"data": {"uri": "{missing}", "target": "label"}},
        "DatasetNotFound",
        "no such file",
    ),
    (
        "missing-s3-object",
        {"data": {"uri": "s3://groveflow-local/datasets/nothing/here.csv", "target": "label"}},
        "DatasetNotFound",
        "here.csv",
    ),
    (
        "bucket-not-readable",
        {"data": {"uri": "s3://someone-elses-bucket/data.csv", "target": "label"}},
        "InvalidRequest",
        "may not read",
    ),
    (
        "monotonic-constraints-on-multiclass",
        {"data": DIGITS, "model": {"params": {"monotonic_cst": [0] * 64}}},
        "InvalidRequest",
        "do not fit this dataset",
    ),
    (
        "monotonic-constraints-wrong-length",
        {"data": {"uri": "sklearn:breast_cancer"}, "model": {"params": {"monotonic_cst": [1, 0]}}},
        "InvalidRequest",
        "monotonic_cst",
    ),
    (
        "max-samples-above-rows",
        {"data": {"uri": "sklearn:iris"}, "model": {"params": {"max_samples": 5000}}},
        "InvalidRequest",
        "max_samples",
    ),
    (
        "own-bucket-outside-datasets",
        {"data": {"uri": "s3://groveflow-local/runs/other/run.json", "target": "label"}},
        "InvalidRequest",
        "not under datasets/",
    ),
    (
        "unsupported-scheme",
        {"data": {"uri": "https://example.com/data.csv", "target": "label"}},
        "InvalidRequest",
        "not supported",
    ),
    ("unreadable-npy", {"data": {"uri": "{garbage_npy}"}}, "InvalidDataset", "not a readable .npy"),
    (
        "header-only-csv",
        {"data": {"uri": "{header_only}", "target": "label"}},
        "InvalidDataset",
        "no rows",
    ),
    (
        "missing-target-column",
        {"data": {"uri": "{good}", "target": "species"}},
        "InvalidDataset",
        "'species' is not in",
    ),
    ("target-not-given", {"data": {"uri": "{good}"}}, "InvalidDataset", "data.target is required"),
    (
        "non-numeric-feature",
        {"data": {"uri": "{text_feature}", "target": "label"}},
        "InvalidDataset",
        "['colour']",
    ),
    (
        "infinite-values",
        {"data": {"uri": "{infinite}", "target": "label"}},
        "InvalidDataset",
        "infinite values",
    ),
    (
        "nan-in-target",
        {"data": {"uri": "{nan_target}", "target": "label"}},
        "InvalidDataset",
        "no target value",
    ),
    (
        "single-class",
        {"data": {"uri": "{single_class}", "target": "label"}},
        "InvalidDataset",
        "single class",
    ),
    (
        "too-few-rows-for-split",
        {"data": {"uri": "{tiny}", "target": "label"}},
        "InvalidDataset",
        "too few rows",
    ),
    ("ragged-csv", {"data": {"uri": "{ragged}", "target": "label"}}, "InvalidDataset", "line 3"),
    (
        "unknown-extension",
        {"data": {"uri": "{no_extension}", "target": "label"}},
        "InvalidDataset",
        "data.format",
    ),
    (
        "text-target-for-regression",
        {"data": {"uri": "{good}", "target": "label"}, "model": {"task": "regression"}},
        "InvalidDataset",
        "regression target must be numeric",
    ),
    (
        "unknown-excluded-column",
        {"data": {"uri": "{good}", "target": "label", "exclude": ["id"]}},
        "InvalidDataset",
        "['id']",
    ),
]


def _fill(value: Any, files: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, files) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return files.get(value[1:-1], "/nonexistent/groveflow/missing.csv")
    return value


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("bad-data"))


def test_catalogue_has_at_least_30_distinct_cases() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(
    ("case", "execution_input", "error", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_fails_at_plan_with_a_named_error(
    engine: Any, files: dict[str, str], case: str, execution_input: Any, error: str, words: str
) -> None:
    # GIVEN a bad execution input
    execution_input = _fill(execution_input, files)
    name = unique_name(case)
    # WHEN it is started
    result = engine.run("TrainStateMachine", execution_input, name=name, run_id=name)
    # THEN the execution fails at Plan (or, for CSV, at the request check or the Ingest step
    # before it) with a named error that says what was wrong, no grove builder ran, and nothing was written
    # under the run's model prefix
    assert result.status == "FAILED"
    assert result.error == error, result.cause
    assert words in (result.cause or ""), result.cause
    # and the Cause carries no internals: no frame below the handler's wrapper
    assert "groveflow/training/" not in result.cause
    assert "groveflow/datasets.py" not in result.cause
    assert "groveflow/ingest.py" not in result.cause
    functions = [i.function for i in result.invocations]
    assert functions in (
        ["PlanFunction"],
        ["ValidateRequestFunction"],
        ["ValidateRequestFunction", "IngestFunction"],
        ["ValidateRequestFunction", "IngestFunction", "PlanFunction"],
    ), functions
    listing = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=keys.model_prefix(name))
    assert listing.get("KeyCount", 0) == 0

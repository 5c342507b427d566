"""Issue 26, item 20: the exported Pipeline reads pandas' frames as groveflow predict reads
the same CSV, whether pandas gives its default dtypes or its nullable ones (``pd.NA``).

One model is trained with ``data.categorical`` on a CSV with a missing cell in every column;
``groveflow predict`` scores that CSV; ``Forest.to_sklearn()`` and the ``groveflow export``
file then score the rows pandas reads from it, as a DataFrame and as a 2-D object array.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from groveflow.api import predict, train
from groveflow.cli import main
from groveflow.engines import Local

pd = pytest.importorskip("pandas")

COLORS = ["red", "green", "blue"]


def _write_table(path: Path, n_rows: int, seed: int) -> None:
    """A CSV whose label depends on a missing color and a missing count, so the forest
    splits on ``color=(missing)`` and on the count's NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        color = "" if i % 7 == 0 else COLORS[int(rng.integers(0, 3))]
        count = "" if i % 5 == 0 else str(int(rng.integers(0, 20)))
        amount = "" if i % 11 == 0 else f"{rng.normal(10, 3):.3f}"
        member = "" if i % 9 == 0 else ["true", "false"][int(rng.integers(0, 2))]
        since = "" if i % 13 == 0 else f"2024-{int(rng.integers(1, 13)):02d}-{i % 28 + 1:02d}"
        label = "lost" if color == "" or count == "" else ("big" if color == "red" else "small")
        rows.append([amount, count, color, member, since, label])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["amount", "count", "color", "member", "since", "label"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The trained run, ``groveflow predict``'s answers on its CSV, and the export."""
    state = tmp_path_factory.mktemp("groveflow-rules-export")
    table = state / "customers.csv"
    _write_table(table, 300, seed=4)
    with Local(workers=2, state_dir=state) as engine:
        run = train(
            {
                "data": {"uri": str(table), "target": "label", "categorical": "auto"},
                "n_trees": 8,
                "grove_size": 4,
                "seed": 5,
                "run_id": "nullable-export",
            },
            engine=engine,
        ).raise_for_status()
        scores = predict(
            {
                "model": run.run_id,
                "data": {"uri": str(table), "exclude": ["label"]},
                "probabilities": True,
                "prediction_id": "nullable-scores",
            },
            engine=engine,
        ).raise_for_status()
    exported = state / "model.joblib"
    code = main(
        ["export", run.run_id, "--format", "joblib", "--state-dir", str(state), "--out",
         str(exported)]
    )  # fmt: skip
    assert code == 0
    assert scores.local_dir is not None
    rows = _prediction_rows(scores.local_dir)
    forest = run.load_forest()
    return {
        "table": table,
        "forest": forest,
        "pipelines": {"to_sklearn": forest.to_sklearn(), "export": joblib.load(exported)},
        "labels": [r["prediction"] for r in rows],
        "proba": np.array([[float(r[f"proba_{c}"]) for c in forest.classes_] for r in rows]),
    }


def _prediction_rows(directory: Path) -> list[dict[str, str]]:
    manifest = json.loads((directory / "manifest.json").read_bytes())
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        with (directory / part["key"]).open(newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def _read(table: Path, dtypes: str) -> Any:
    """The CSV as pandas reads it: its default dtypes, or nullable ones (``pd.NA``)."""
    if dtypes == "numpy_nullable":
        return pd.read_csv(table, dtype_backend="numpy_nullable")
    frame = pd.read_csv(table)
    if dtypes == "convert_dtypes":
        return frame.convert_dtypes()
    if dtypes == "string color":  # only the categorical column nullable: no error to see
        return frame.astype({"color": "string"})
    return frame


@pytest.mark.parametrize("pipeline", ["to_sklearn", "export"])
@pytest.mark.parametrize("dtypes", ["default", "convert_dtypes", "numpy_nullable", "string color"])
@pytest.mark.parametrize("form", ["DataFrame", "object array"])
def test_the_exported_pipeline_predicts_as_groveflow_predict(
    scored: dict[str, Any], pipeline: str, dtypes: str, form: str
) -> None:
    # GIVEN the rows pandas reads from the CSV groveflow predict scored
    frame = _read(scored["table"], dtypes)
    if dtypes != "default":
        assert frame["color"].dtype == "string" and frame["color"].isna().sum() > 0
    X = frame[scored["forest"].encoding.input_names]
    rows = X if form == "DataFrame" else X.to_numpy(dtype=object)

    # WHEN the exported Pipeline scores them
    model = scored["pipelines"][pipeline]
    proba = model.predict_proba(rows)

    # THEN it answers exactly as groveflow predict did, row for row
    assert proba.shape == scored["proba"].shape
    assert np.max(np.abs(proba - scored["proba"])) == 0
    assert model.predict(rows).tolist() == scored["labels"]


@pytest.mark.parametrize("dtypes", ["default", "convert_dtypes"])
def test_a_bad_cell_is_refused_naming_its_column(scored: dict[str, Any], dtypes: str) -> None:
    X = _read(scored["table"], dtypes)[scored["forest"].encoding.input_names].astype(object)
    X.loc[3, "amount"] = "lots"
    X.loc[4, "since"] = "yesterday"
    model = scored["pipelines"]["export"]

    with pytest.raises(ValueError, match=r"^column 'amount': 'lots' is not a number$"):
        model.predict(X.to_numpy(dtype=object))
    X.loc[3, "amount"] = 1.0
    with pytest.raises(ValueError, match=r"^column 'since': 'yesterday' is not an ISO 8601"):
        model.predict(X)

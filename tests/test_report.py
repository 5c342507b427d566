"""The run report: every plot present and real, and its numbers those of the manifest."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, r2_score

from conftest import unique_name
from groveflow.artifact import Forest, decode_trees, load_forest
from groveflow.cost import child_transitions, count_state_transitions, estimate_cost
from groveflow.errors import ModelNotFound
from groveflow.report import holdout_curve, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 5_000
CLASSIFICATION_PLOTS = {
    "metric_vs_trees",
    "confusion_matrix",
    "feature_importances",
    "grove_fit_seconds",
}
REGRESSION_PLOTS = {"metric_vs_trees", "residuals", "feature_importances", "grove_fit_seconds"}


class _Page(HTMLParser):
    """The report's images (by id) and table cells with an id (text and data-value)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.cells: dict[str, tuple[str, str | None]] = {}
        self.scripts = 0
        self._open: tuple[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images[str(attributes["id"])] = str(attributes["src"])
        elif tag == "td" and attributes.get("id"):
            self._open = (str(attributes["id"]), attributes.get("data-value"))
            self.cells[self._open[0]] = ("", self._open[1])
        elif tag in ("script", "link", "iframe"):
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            ident, value = self._open
            self.cells[ident] = (self.cells[ident][0] + data, value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None

    def text(self, ident: str) -> str:
        return self.cells[ident][0]

    def value(self, ident: str) -> float:
        return float(str(self.cells[ident][1]))


@dataclass(frozen=True)
class _Report:
    run_dir: Path
    out_dir: Path
    page: _Page
    html: str
    manifest: dict[str, Any]


def _train_and_report(
    engine: Any, out_dir: Path, request: dict[str, Any], with_cost: bool = False
) -> _Report:
    run_id = unique_name("report")
    result = engine.run("TrainStateMachine", {**request, "run_id": run_id}, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    cost = None
    if with_cost:
        groves = [i for i in result.invocations if i.function == "BuildGroveFunction"]
        children = child_transitions(len({i.payload["grove"] for i in groves}), len(groves))
        cost = estimate_cost(
            result.invocations,
            count_state_transitions(engine.history(result.execution_arn), children),
        )
    run_dir = engine.run_dir(run_id)
    path = write_report(run_dir, out_dir, result.invocations if with_cost else None, cost)
    assert path == out_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
    return _Report(run_dir, out_dir, page, text, manifest)


@pytest.fixture(scope="module")
def iris(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> _Report:
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 10, "grove_size": 2}
    return _train_and_report(engine, tmp_path_factory.mktemp("iris"), request, with_cost=True)


@pytest.fixture(scope="module")
def diabetes(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> _Report:
    request = {
        "data": {"uri": "sklearn:diabetes"},
        "model": {"kind": "random_forest", "task": "regression"},
        "n_trees": 10,
        "grove_size": 2,
    }
    return _train_and_report(engine, tmp_path_factory.mktemp("diabetes"), request)


@pytest.fixture(scope="module")
def no_holdout(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> _Report:
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2, "test_fraction": 0}
    return _train_and_report(engine, tmp_path_factory.mktemp("no-holdout"), request)


def _assert_plots(report: _Report, expected: set[str]) -> None:
    assert set(report.page.images) == {f"plot-{name}" for name in expected}
    for name in expected:
        src = report.page.images[f"plot-{name}"]
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), name
        png = base64.b64decode(src[len(prefix) :], validate=True)
        assert png.startswith(PNG_SIGNATURE), name
        assert len(png) > MIN_PNG_BYTES, (name, len(png))
        assert (report.out_dir / f"{name}.png").read_bytes() == png, name


def test_classification_report_embeds_every_plot_as_a_real_png(iris: _Report) -> None:
    # GIVEN a report of an iris run (10 trees in groves of 2)
    # THEN the curve, confusion matrix, importances and build times are each an embedded PNG
    # of some KB, identical to the PNG file written next to the report
    _assert_plots(iris, CLASSIFICATION_PLOTS)
    assert iris.page.scripts == 0
    assert "http://" not in iris.html and "https://" not in iris.html


def test_regression_report_shows_residuals_instead_of_a_confusion_matrix(
    diabetes: _Report,
) -> None:
    _assert_plots(diabetes, REGRESSION_PLOTS)


@pytest.mark.parametrize(("fixture", "metric"), [("iris", "accuracy"), ("diabetes", "r2")])
def test_last_point_of_the_curve_is_the_whole_forest_metric(
    fixture: str, metric: str, request: pytest.FixtureRequest
) -> None:
    # GIVEN a report, whose curve is computed from per-tree predictions in grove order
    report: _Report = request.getfixturevalue(fixture)
    # THEN its last point equals the metric the merge computed on the whole forest
    assert report.page.value("curve-final") == pytest.approx(
        report.manifest["metrics"][metric], abs=1e-12
    )
    assert report.page.value(f"metric-{metric}") == report.manifest["metrics"][metric]


@pytest.mark.parametrize("fixture", ["iris", "diabetes"])
def test_curve_at_each_grove_boundary_is_the_forest_of_the_groves_so_far(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # GIVEN a run's forest, its held-out rows and each grove's own artifact (2 trees each)
    report: _Report = request.getfixturevalue(fixture)
    forest = load_forest(str(report.run_dir / "model"))
    X = np.load(report.run_dir / "data" / "X_test.npy")
    y = np.load(report.run_dir / "data" / "y_test.npy")
    groves = [
        decode_trees((report.run_dir / "groves" / f"grove-{g['grove']:05d}.gfa").read_bytes())
        for g in report.manifest["groves"]
    ]
    score = accuracy_score if forest.task == "classification" else r2_score
    # WHEN the curve is computed
    curve = holdout_curve(forest, X, y)
    # THEN it has a point per tree, and after j groves it is the metric of those j groves merged
    assert curve.metric == ("accuracy" if forest.task == "classification" else "r2")
    assert curve.n_trees.tolist() == list(range(1, 11))
    for j in range(1, len(groves) + 1):
        merged = Forest.concat(groves[:j])
        assert curve.values[2 * j - 1] == score(y, merged.predict(X)), j


def test_report_numbers_are_the_manifest_numbers(iris: _Report) -> None:
    page, manifest = iris.page, iris.manifest
    assert page.text("run-id") == manifest["run_id"]
    assert int(page.text("trees-built")) == manifest["trees_built"] == 10
    assert int(page.text("trees-requested")) == manifest["trees_requested"] == 10
    assert int(page.text("groves-built")) == len(manifest["groves"]) == 5
    assert page.text("data-uri") == "sklearn:iris"
    assert page.text("data-sha256") == manifest["data"]["sha256"]
    assert page.text("test-rows-sha256") == manifest["data"]["test_rows_sha256"]
    assert int(page.text("seed")) == manifest["seed"]
    for name, version in manifest["versions"].items():
        assert page.text(f"version-{name}") == version
    for grove in manifest["groves"]:
        assert f">{grove['seed']}<" in iris.html
        assert grove["sha256"] in iris.html


def test_cost_section_shows_the_given_estimate(iris: _Report, diabetes: _Report) -> None:
    # GIVEN the iris report was written with invocations and a cost estimate; diabetes without
    # THEN only the iris report has the cost and invocation sections
    assert iris.page.value("cost-total") > 0
    assert "Estimated AWS cost" in iris.html and "BuildGroveFunction" in iris.html
    assert "cost-total" not in diabetes.page.cells
    assert "Estimated AWS cost" not in diabetes.html


def test_run_without_holdout_says_so_and_skips_holdout_plots(no_holdout: _Report) -> None:
    # GIVEN a run with test_fraction=0
    # THEN the report says there is no holdout and shows only importances and build times
    assert 'id="no-holdout"' in no_holdout.html
    assert "test_fraction=0" in no_holdout.html
    _assert_plots(no_holdout, {"feature_importances", "grove_fit_seconds"})
    assert int(no_holdout.page.text("trees-built")) == 4
    assert not (no_holdout.out_dir / "metric_vs_trees.png").exists()


def test_run_without_a_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"manifest"):
        write_report(tmp_path / "runs" / "never-merged", tmp_path / "out")

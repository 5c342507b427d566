"""A self-contained HTML report of one training run: metrics, plots, provenance and cost.

The report reads only the run's directory (the local mirror of ``runs/<run_id>/``): the manifest,
the forest and the held-out split. Plots are PNG files written next to ``report.html`` and also
embedded in it as base64 data URIs, so the one HTML file can be mailed or archived alone. The page
is plain HTML with inline CSS: no JavaScript, nothing fetched from the network.

matplotlib is imported only when a report is written (it is not needed to train or predict).
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from groveflow.api import StageMemory, stage_memory, stored_builder_estimate
from groveflow.artifact import Forest, load_forest
from groveflow.cost import CostEstimate, InvocationLike, billed_gb_seconds
from groveflow.documents import GroveRecord, ModelManifest
from groveflow.errors import ModelNotFound
from groveflow.ids import is_valid_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HoldoutCurve", "holdout_curve", "write_report"]

REPORT_NAME = "report.html"
TOP_FEATURES = 20
MAX_CURVE_POINTS = 500
MAX_ANNOTATED_CLASSES = 20
_DPI = 110


@dataclass(frozen=True)
class HoldoutCurve:
    """The holdout metric of the first ``k`` trees (in grove order), for several ``k``.

    Attributes
    ----------
    metric : {"accuracy", "r2"}
        Accuracy for classification, R² for regression.
    n_trees : ndarray of shape (n_points,)
        Increasing tree counts; the last one is the whole forest.
    values : ndarray of shape (n_points,)
        The metric of the forest made of the first ``n_trees[i]`` trees.
    """

    metric: str
    n_trees: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class _Plot:
    name: str
    title: str
    caption: str
    png: bytes


# --------------------------------------------------------------------------- public API


def write_report(
    run_dir: Path,
    out_dir: Path,
    invocations: Sequence[InvocationLike] | None = None,
    cost: CostEstimate | None = None,
) -> Path:
    """Write ``report.html`` and its PNG plots for the run stored in ``run_dir``.

    Parameters
    ----------
    run_dir : Path
        The run's directory, holding ``model/manifest.json``, ``model/forest.gfa`` and
        ``data/X_test.npy`` / ``data/y_test.npy``.
    out_dir : Path
        Where ``report.html`` and the PNG files go; created if missing.
    invocations : sequence of InvocationLike or None, default=None
        The run's Lambda invocations, summarized per function when given.
    cost : CostEstimate or None, default=None
        The run's estimated AWS cost, shown in its own section when given.

    Returns
    -------
    Path
        The written ``report.html``.

    Raises
    ------
    ModelNotFound
        If ``run_dir`` holds no manifest (the run did not finish its merge).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    manifest = _read_manifest(run_dir)
    forest = load_forest(str(run_dir / "model"), manifest=manifest.to_dict())
    holdout = _read_holdout(run_dir)
    plots, curve = _plots(manifest, forest, holdout)
    out_dir.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        (out_dir / f"{plot.name}.png").write_bytes(plot.png)
    page = _page(
        manifest,
        plots,
        curve,
        has_holdout=holdout is not None,
        invocations=invocations,
        cost=cost,
        builder_estimate_mb=stored_builder_estimate(run_dir),
    )
    path = out_dir / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path


def holdout_curve(forest: Forest, X: np.ndarray, y: np.ndarray) -> HoldoutCurve:
    """The holdout metric as a function of the number of trees, from per-tree predictions.

    The forest of the first ``k`` trees predicts the mean of their outputs, summed in float64 in
    tree order and divided once, as :meth:`Forest.predict_proba` does: so the last point (all
    trees) is exactly the whole forest's metric.

    Parameters
    ----------
    forest : Forest
        The merged forest; its trees are in grove order.
    X : array-like of shape (n_samples, n_features)
        Held-out features (at least one row).
    y : ndarray of shape (n_samples,)
        Held-out labels or values.

    Returns
    -------
    HoldoutCurve
        At every tree count, or at about ``MAX_CURVE_POINTS`` evenly spaced ones for big forests.
    """
    from sklearn.metrics import accuracy_score, r2_score

    if len(X) == 0:
        raise ValueError("holdout_curve needs at least one held-out row")
    points = set(np.unique(np.linspace(1, forest.n_trees, MAX_CURVE_POINTS).round().astype(int)))
    classes = forest.classes_
    total: np.ndarray | None = None
    counts, values = [], []
    for k, prediction in enumerate(forest.tree_predictions(X), start=1):
        total = prediction.astype(np.float64) if total is None else total + prediction
        if k not in points:
            continue
        mean = total / k
        if classes is None:
            values.append(float(r2_score(y, mean[:, 0])))
        else:
            values.append(float(accuracy_score(y, classes[np.argmax(mean, axis=1)])))
        counts.append(k)
    metric = "r2" if classes is None else "accuracy"
    return HoldoutCurve(metric, np.array(counts), np.array(values))


# --------------------------------------------------------------------------- reading


def _read_manifest(run_dir: Path) -> ModelManifest:
    path = run_dir / "model" / "manifest.json"
    try:
        return ModelManifest.from_json(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise ModelNotFound(
            f"no manifest at {path}: the run has no model (did its merge finish?)"
        ) from None


def _read_holdout(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out split, or None when the run kept no rows back (``test_fraction=0``).

    A search's candidate has no split of its own: its ``data/source.json`` names the run
    (beside it) whose split it shares."""
    source = run_dir / "data" / "source.json"
    if source.is_file():
        shared = json.loads(source.read_bytes()).get("run_id")
        if not is_valid_id(shared):
            return None
        run_dir = run_dir.parent / str(shared)
    try:
        X = np.load(run_dir / "data" / "X_test.npy", allow_pickle=False)
        y = np.load(run_dir / "data" / "y_test.npy", allow_pickle=False)
    except FileNotFoundError:
        return None
    return (X, y) if len(y) else None


# --------------------------------------------------------------------------- plots


def _plots(
    manifest: ModelManifest, forest: Forest, holdout: tuple[np.ndarray, np.ndarray] | None
) -> tuple[list[_Plot], HoldoutCurve | None]:
    plots: list[_Plot] = []
    curve = None
    if holdout is not None:
        X, y = holdout
        curve = holdout_curve(forest, X, y)
        plots.append(_curve_plot(curve, manifest))
        if forest.classes_ is not None:
            plots.append(_confusion_plot(forest, X, y))
        else:
            plots.append(_residual_plot(forest, X, y))
    if manifest.oob is not None:
        plots.append(
            _oob_plot(manifest.oob, curve, "r2" if forest.classes_ is None else "accuracy")
        )
    plots.append(_importance_plot(forest, manifest))
    if any(g.fit_seconds is not None for g in manifest.groves):
        plots.append(_fit_seconds_plot(manifest.groves))
    return plots, curve


def _render(draw: Callable[[Figure], None], size: tuple[float, float] = (6.4, 4.0)) -> bytes:
    """PNG bytes of a figure drawn by ``draw``, on the Agg backend without touching pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _curve_plot(curve: HoldoutCurve, manifest: ModelManifest) -> _Plot:
    label = _metric_label(curve.metric)
    boundaries = np.cumsum([g.n_trees for g in manifest.groves])[:-1]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        for boundary in boundaries if len(boundaries) <= 50 else ():
            axes.axvline(boundary, color="0.9", linewidth=0.8, zorder=0)
        axes.plot(curve.n_trees, curve.values, color="tab:blue", linewidth=1.5)
        axes.plot(curve.n_trees[-1:], curve.values[-1:], "o", color="tab:blue")
        axes.annotate(
            f"{curve.values[-1]:.4f}",
            (curve.n_trees[-1], curve.values[-1]),
            textcoords="offset points",
            xytext=(-8, 8),
            ha="right",
        )
        axes.set_xlabel("number of trees (grove order)")
        axes.set_ylabel(f"holdout {label}")
        axes.grid(alpha=0.3)

    caption = (
        f"Holdout {label} of the forest made of the first k trees, from per-tree predictions on "
        "the held-out rows; the last point is the whole forest. Light lines mark grove boundaries."
    )
    return _Plot("metric_vs_trees", f"Holdout {label} by number of trees", caption, _render(draw))


def _oob_plot(oob: dict[str, Any], holdout: HoldoutCurve | None, metric: str) -> _Plot:
    """The OOB score of the first k trees, beside the holdout curve when there is one."""
    label = _metric_label(metric)
    points = np.array(oob["curve"], dtype=np.float64).reshape(-1, 2)

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.plot(points[:, 0], points[:, 1], color="tab:green", linewidth=1.5, label="OOB")
        if holdout is not None:
            axes.plot(holdout.n_trees, holdout.values, color="tab:blue", alpha=0.6, label="holdout")
        axes.set_xlabel("number of trees (grove order)")
        axes.set_ylabel(label)
        axes.legend()
        axes.grid(alpha=0.3)

    caption = (
        f"Out-of-bag {label} of the forest made of the first k trees (each training row scored "
        "only by the trees whose bootstrap left it out), from the groves' OOB sums; the holdout "
        "curve, where there is one, for comparison."
    )
    return _Plot("oob_vs_trees", f"OOB {label} by number of trees", caption, _render(draw))


def _importance_plot(forest: Forest, manifest: ModelManifest) -> _Plot:
    importances = forest.feature_importances_
    names = _feature_names(manifest, len(importances))
    top = np.argsort(-importances, kind="stable")[:TOP_FEATURES][::-1]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.barh([names[i] for i in top], importances[top], color="tab:green")
        axes.set_xlabel("impurity-based importance (sums to 1 over all features)")
        axes.tick_params(axis="y", labelsize=8)

    height = max(2.5, 0.3 * len(top) + 1.0)
    caption = (
        f"The {len(top)} most important of {len(importances)} features "
        "(mean decrease in impurity over the forest's trees)."
    )
    return _Plot(
        "feature_importances", "Feature importances", caption, _render(draw, (6.4, height))
    )


def _confusion_plot(forest: Forest, X: np.ndarray, y: np.ndarray) -> _Plot:
    from sklearn.metrics import confusion_matrix

    classes = forest.classes_
    assert classes is not None
    matrix = confusion_matrix(y, forest.predict(X), labels=classes)
    annotate = len(classes) <= MAX_ANNOTATED_CLASSES

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        image = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axes, label="rows")
        ticks = np.arange(len(classes))
        if annotate:
            labels = [str(c) for c in classes]
            axes.set_xticks(ticks, labels, rotation=45 if len(classes) > 6 else 0)
            axes.set_yticks(ticks, labels)
            threshold = matrix.max() / 2
            for (row, column), count in np.ndenumerate(matrix):
                color = "white" if count > threshold else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=color)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")

    caption = "Held-out rows by true class (rows) and predicted class (columns)."
    return _Plot("confusion_matrix", "Confusion matrix", caption, _render(draw, (5.6, 4.6)))


def _residual_plot(forest: Forest, X: np.ndarray, y: np.ndarray) -> _Plot:
    predicted = forest.predict(X)
    residuals = np.asarray(y, dtype=np.float64) - predicted

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.scatter(predicted, residuals, s=12, alpha=0.6, color="tab:purple")
        axes.axhline(0.0, color="0.3", linewidth=1)
        axes.set_xlabel("predicted value")
        axes.set_ylabel("residual (true - predicted)")
        axes.grid(alpha=0.3)

    caption = "Residuals of the held-out rows against the forest's prediction."
    return _Plot("residuals", "Residuals", caption, _render(draw))


def _fit_seconds_plot(groves: list[GroveRecord]) -> _Plot:
    timed = [(g.fit_seconds, g.grove) for g in groves if g.fit_seconds is not None]
    seconds = np.array([fit for fit, _ in timed], dtype=np.float64)
    median = float(np.median(seconds))
    slowest = timed[int(np.argmax(seconds))]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.hist(seconds, bins=min(30, max(5, len(seconds))), color="tab:orange", alpha=0.8)
        axes.axvline(median, color="black", linestyle="--", label=f"median {median:.3f} s")
        axes.axvline(
            slowest[0],
            color="tab:red",
            label=f"max {slowest[0]:.3f} s (grove {slowest[1]})",
        )
        axes.set_xlabel("grove fit time (s)")
        axes.set_ylabel("groves")
        axes.legend()

    caption = (
        f"Fit time of each of {len(timed)} groves (scikit-learn fit only, measured in the "
        "builder). A max far right of the median is a straggler: the run waits for it."
    )
    return _Plot("grove_fit_seconds", "Grove build times", caption, _render(draw))


def _feature_names(manifest: ModelManifest, n_features: int) -> list[str]:
    names = manifest.feature_names
    if len(names) == n_features:
        return [str(name) for name in names]
    return [f"x{i}" for i in range(n_features)]


def _metric_label(metric: str) -> str:
    return {"r2": "R²", "accuracy": "accuracy"}.get(metric, metric)


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222;
       padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85rem; word-break: break-all; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }
"""


def _page(
    manifest: ModelManifest,
    plots: list[_Plot],
    curve: HoldoutCurve | None,
    *,
    has_holdout: bool,
    invocations: Sequence[InvocationLike] | None,
    cost: CostEstimate | None,
    builder_estimate_mb: int | None = None,
) -> str:
    run_id = _e(manifest.run_id)
    sections = [
        f"<h1>groveflow run <code>{run_id}</code></h1>",
        _summary_section(manifest),
        _metrics_section(manifest, curve, has_holdout),
        *([_oob_section(manifest.oob)] if manifest.oob is not None else []),
        *([_search_section(manifest.search)] if manifest.search is not None else []),
        *(_figure(plot) for plot in plots),
        _provenance_section(manifest),
        _groves_section(manifest),
    ]
    if invocations is not None:
        sections.append(_invocations_section(invocations))
    if cost is not None:
        sections.append(_cost_section(cost))
        if cost.by_function:
            sections.append(_memory_section(stage_memory(cost.by_function, builder_estimate_mb)))
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>groveflow report: {run_id}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _row(label: str, value: Any, ident: str | None = None, data: Any = None) -> str:
    attributes = f' id="{ident}"' if ident else ""
    if data is not None:
        attributes += f' data-value="{_e(data)}"'
    return f"<tr><th>{_e(label)}</th><td{attributes}>{_e(value)}</td></tr>"


def _table(rows: Sequence[str]) -> str:
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _summary_section(manifest: ModelManifest) -> str:
    missing = manifest.groves_missing
    forest = manifest.forest
    rows = [
        _row("run id", manifest.run_id, "run-id"),
        _row("task", manifest.task, "task"),
        _row("model", manifest.kind, "kind"),
        _row("trees built", manifest.trees_built, "trees-built"),
        _row("trees requested", manifest.trees_requested, "trees-requested"),
        _row("groves built", len(manifest.groves), "groves-built"),
        _row("groves missing", ", ".join(map(str, missing)) or "none", "groves-missing"),
        _row("forest", f"{forest.key} ({forest.bytes:,} bytes)"),
    ]
    return "<h2>Summary</h2>\n" + _table(rows)


def _metrics_section(manifest: ModelManifest, curve: HoldoutCurve | None, has_holdout: bool) -> str:
    if not has_holdout or curve is None:
        return (
            '<h2>Holdout metrics</h2>\n<p class="note" id="no-holdout">This run kept no '
            "held-out rows (test_fraction=0), so it has no holdout metrics, metric-by-trees "
            "curve, confusion matrix or residual plot.</p>"
        )
    metrics = manifest.metrics
    rows = [
        _row(name, "n/a" if value is None else _number(value), f"metric-{name}", value)
        for name, value in metrics.items()
    ]
    final = float(curve.values[-1])
    rows.append(
        _row(
            f"{_metric_label(curve.metric)} at the curve's last point ({curve.n_trees[-1]} trees)",
            _number(final),
            "curve-final",
            repr(final),
        )
    )
    return "<h2>Holdout metrics</h2>\n" + _table(rows)


def _oob_section(oob: dict[str, Any]) -> str:
    rows = [
        _row(name, "n/a" if value is None else _number(value), f"oob-{name}", value)
        for name, value in oob["metrics"].items()
    ]
    return "<h2>Out-of-bag metrics</h2>\n" + _table(rows)


def _search_section(search: dict[str, Any]) -> str:
    """The search that chose this model: each candidate's params and score by trees."""
    rounds = [n_trees for _, n_trees in search["rounds"]]
    header = "".join(f"<th>score at {t} trees</th>" for t in rounds)
    rows = []
    for candidate in search["candidates"]:
        scores = {int(t): s for t, s in candidate["scores"]}
        cells = "".join(
            f'<td data-value="{_e(scores[t])}">{_number(scores[t])}</td>'
            if scores.get(t) is not None
            else f"<td>{'lost its groves' if t in scores else ''}</td>"
            for t in rounds
        )
        mark = " (chosen)" if candidate["run_id"] == search["winner"] else ""
        params = ", ".join(f"{k}={v!r}" for k, v in candidate["params"].items())
        rows.append(
            f'<tr id="search-{_e(candidate["run_id"])}"><th>{_e(candidate["run_id"])}{mark}</th>'
            f"<td>{_e(params)}</td>{cells}</tr>"
        )
    summary = (
        f'<p id="search-summary">{_e(search["strategy"])} search on {_e(search["metric"])} '
        f"(factor {_e(search['factor'])}): {len(search['candidates'])} candidates, "
        f"{_e(search['trees_fitted'])} trees fitted; the chosen parameters are "
        f"<code>{_e(search['winner_params'])}</code>.</p>"
    )
    table = f"<table>\n<tr><th>candidate</th><th>params</th>{header}</tr>\n" + "\n".join(rows)
    return "<h2>Hyperparameter search</h2>\n" + summary + "\n" + table + "\n</table>"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _figure(plot: _Plot) -> str:
    encoded = base64.b64encode(plot.png).decode("ascii")
    return (
        f"<h2>{_e(plot.title)}</h2>\n<figure>\n"
        f'<img id="plot-{plot.name}" alt="{_e(plot.title)}" '
        f'src="data:image/png;base64,{encoded}">\n'
        f"<figcaption>{_e(plot.caption)} (also <code>{plot.name}.png</code>)</figcaption>\n"
        "</figure>"
    )


def _provenance_section(manifest: ModelManifest) -> str:
    data = manifest.data
    rows = [
        _row("data uri", data.uri, "data-uri"),
        _row("data sha256", data.sha256, "data-sha256"),
        _row("rows (train / test)", f"{data.n_rows} ({data.n_train} / {data.n_test})"),
        _row("features", data.n_features),
        _row("test rows sha256", data.test_rows_sha256, "test-rows-sha256"),
        _row("run seed", manifest.seed, "seed"),
        _row("parameters", json.dumps(manifest.params, sort_keys=True), "params"),
        _row("forest sha256", manifest.forest.sha256),
    ]
    rows += [
        _row(name, version, f"version-{name}")
        for name, version in sorted(manifest.versions.items())
    ]
    return "<h2>Parameters and provenance</h2>\n" + _table(rows)


def _groves_section(manifest: ModelManifest) -> str:
    seen = any(g.data for g in manifest.groves)
    extra = "<th>rows</th><th>shards read</th><th>MB read</th>" if seen else ""
    head = (
        f"<tr><th>grove</th><th>seed</th><th>trees</th>{extra}<th>fit (s)</th><th>sha256</th></tr>"
    )
    rows = [head]
    for grove in manifest.groves:
        seconds = grove.fit_seconds
        data = grove.data or {}
        cells = (
            "".join(
                f'<td class="num">{value}</td>'
                for value in (
                    data.get("rows", "n/a"),
                    data.get("shards", "n/a"),
                    f"{data['bytes_read'] / 2**20:.1f}" if "bytes_read" in data else "n/a",
                )
            )
            if seen
            else ""
        )
        rows.append(
            f'<tr><td class="num">{grove.grove}</td><td class="num">{grove.seed}</td>'
            f'<td class="num">{grove.n_trees}</td>{cells}'
            f'<td class="num">{"n/a" if seconds is None else f"{seconds:.3f}"}</td>'
            f"<td><code>{_e(grove.sha256)}</code></td></tr>"
        )
    timed = [g.fit_seconds for g in manifest.groves if g.fit_seconds is not None]
    note = (
        ""
        if timed
        else '<p class="note">The groves carry no fit times, so no build-time plot.</p>\n'
    )
    shards = manifest.data.shards
    if shards:
        note += (
            f'<p class="data-rule">How the groves saw the data: {_e(str(shards.get("rule")))} '
            f"({_e(str(shards.get('why')))}).</p>\n"
        )
    return (
        f"<h2>Groves and their seeds</h2>\n{note}<details><summary>{len(manifest.groves)} "
        f"groves (seed of each from the run seed {manifest.seed})</summary>\n"
        f"{_table(rows)}\n</details>"
    )


def _invocations_section(invocations: Sequence[InvocationLike]) -> str:
    by_function: dict[str, list[InvocationLike]] = defaultdict(list)
    for invocation in invocations:
        by_function[str(getattr(invocation, "function", "Lambda"))].append(invocation)
    head = (
        "<tr><th>function</th><th>invocations</th><th>errors</th><th>memory (MB)</th>"
        "<th>median (ms)</th><th>max (ms)</th><th>GB-seconds billed</th></tr>"
    )
    rows = [head]
    for function, group in by_function.items():
        durations = [i.duration_ms for i in group]
        errors = sum(1 for i in group if getattr(i, "error_type", None))
        memory = ", ".join(str(mb) for mb in sorted({i.memory_mb for i in group}))
        gb_seconds = sum(billed_gb_seconds(i.duration_ms, i.memory_mb) for i in group)
        rows.append(
            f'<tr><td>{_e(function)}</td><td class="num">{len(group)}</td>'
            f'<td class="num">{errors}</td><td class="num">{_e(memory)}</td>'
            f'<td class="num">{statistics.median(durations):.1f}</td>'
            f'<td class="num">{max(durations):.1f}</td>'
            f'<td class="num">{gb_seconds:.3f}</td></tr>'
        )
    return "<h2>Lambda invocations</h2>\n" + _table(rows)


def _cost_section(cost: CostEstimate) -> str:
    rows = [
        _row("Lambda compute", f"{cost.gb_seconds:.3f} GB-s = ${cost.lambda_compute_usd:.6f}"),
        _row("Lambda requests", f"{cost.lambda_requests} = ${cost.lambda_request_usd:.6f}"),
        _row(
            "Step Functions",
            f"{cost.state_transitions} state transitions = ${cost.step_functions_usd:.6f}",
        ),
        _row("total", f"${cost.total_usd:.6f}", "cost-total", repr(cost.total_usd)),
    ]
    note = (
        f"<p>List prices for {_e(cost.region)} (x86 Lambda, Standard workflows) as of "
        f"{_e(cost.prices_as_of)}, without free tiers; S3 requests and storage are not included."
        "</p>"
    )
    return "<h2>Estimated AWS cost</h2>\n" + _table(rows) + "\n" + note


def _memory_section(memory: dict[str, StageMemory]) -> str:
    """Each stage's peak memory (``Max Memory Used``) against its configured memory."""
    head = (
        "<tr><th>stage</th><th>function</th><th>memory (MB)</th><th>peak used (MB)</th>"
        "<th>used</th><th>size guard's estimate (MB)</th><th>out of memory</th></tr>"
    )
    rows = [head]
    for use in memory.values():
        peak = "n/a" if use.max_memory_used_mb is None else str(use.max_memory_used_mb)
        fraction = "n/a" if use.used_fraction is None else f"{use.used_fraction:.0%}"
        estimate = "" if use.estimate_mb is None else str(use.estimate_mb)
        rows.append(
            f"<tr><td>{_e(use.stage)}</td><td>{_e(use.function)}</td>"
            f'<td class="num">{use.memory_mb}</td><td class="num">{_e(peak)}</td>'
            f'<td class="num">{_e(fraction)}</td><td class="num">{_e(estimate)}</td>'
            f'<td class="num">{use.out_of_memory}</td></tr>'
        )
    return "<h2>Memory per stage</h2>\n" + _table(rows)

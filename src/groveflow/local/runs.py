"""Finished runs in a local state directory: their model, their report, an export.

What ``groveflow report`` and ``groveflow export`` work on: a run the local engine (or
``groveflow serve``) mirrored to ``<state_dir>/s3/groveflow-local/runs/<run_id>/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from groveflow.documents import ModelManifest
from groveflow.errors import InvalidRequest, ModelNotFound
from groveflow.ids import check_id
from groveflow.layout import keys

__all__ = ["export", "local_manifest", "local_run_dir", "report"]


def local_run_dir(state_dir: Path, run_id: str) -> Path:
    """The mirror of a finished run; :class:`ModelNotFound` if it has no model manifest."""
    from groveflow.local.engine import mirrored

    checked = check_id(run_id, name="RUN", error=InvalidRequest)
    run_dir = mirrored(state_dir.resolve(), keys.run_prefix(checked))
    if not (run_dir / "model" / "manifest.json").is_file():
        raise ModelNotFound(f"no finished local run {run_id!r} in {run_dir.parent}")
    local_manifest(run_dir)  # a damaged manifest is named before any work
    return run_dir


def local_manifest(run_dir: Path) -> ModelManifest:
    """A local run's model manifest; :class:`ArtifactError` naming the file if it is damaged."""
    path = run_dir / "model" / "manifest.json"
    return ModelManifest.from_json(path.read_bytes(), str(path))


def report(state_dir: Path, run_id: str, out: Path | None = None) -> Path:
    """Write the run's ``report.html`` (in ``<run>/report/`` unless ``out``); its path."""
    from types import SimpleNamespace

    from groveflow.cost import CostEstimate
    from groveflow.local.engine import execution_record
    from groveflow.report import write_report

    run_dir = local_run_dir(state_dir, run_id)
    record_path = execution_record(state_dir.resolve(), run_id=run_id)
    if not record_path.is_file():
        record_path = run_dir / "execution.json"  # where earlier versions kept it
    invocations = cost = None
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        invocations = [SimpleNamespace(**i) for i in record["invocations"]]
        cost = CostEstimate(**record["cost"]) if record.get("cost") else None
    return Path(write_report(run_dir, out or run_dir / "report", invocations, cost))


def export(state_dir: Path, run_id: str, fmt: str, out: Path | None = None) -> Path:
    """Write the run's model as a scikit-learn file (``joblib`` or ``skops``); its path.

    A model trained with ``data.categorical`` is written as a ``Pipeline`` (its encoding,
    then its forest) that predicts from the raw columns; loading it needs groveflow.
    """
    from groveflow.artifact import load_forest

    run_dir = local_run_dir(state_dir, run_id)
    manifest = local_manifest(run_dir)
    estimator = load_forest(str(run_dir / "model")).to_sklearn(manifest.kind, manifest.params)
    target = out or Path(f"{run_id}.{fmt}")
    if fmt == "joblib":
        import joblib

        joblib.dump(estimator, target)
    else:
        import skops.io

        skops.io.dump(estimator, target)
    return target

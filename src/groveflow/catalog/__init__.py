"""Runs, searches and predictions where they are stored: list them, fetch one, delete one.

Runs live in two places: a bucket (a deployed stack's, or ``groveflow serve``'s at
``--endpoint-url``) and a local state directory (the mirror of the local engine's bucket,
``<state_dir>/s3/groveflow-local/``). A :class:`Place` answers the few questions that differ
between them (which ids are stored, an object's bytes, which executions run, what a run cost,
how to remove a prefix); what belongs to a run, a search's parts, a run's status and the
refusal to delete a running one are decided here, once, for both.

A search (``runs/<search>/search.json``) is listed as one entry. Its parts are the runs it
recorded (:func:`groveflow.documents.search_parts`: its candidates ``<search>-c007``, a
validation search's split ``<search>-val`` and refit winner ``<search>-final``) and the runs
whose record names it as their ``search_id``; they are deleted with it and never on their own.
A run merely named like a part (``<search>-final`` beside an OOB search) is a run of its own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from groveflow.catalog._places import (
    DESCRIBE_THREADS,
    BucketPlace,
    DirPlace,
    Place,
    Running,
    remove_versions,
)
from groveflow.cost import CostEstimate
from groveflow.documents import ModelManifest, search_parts
from groveflow.engines import Local, default_engine
from groveflow.errors import GroveflowError, InvalidRequest, ModelNotFound
from groveflow.ids import check_id, is_valid_id
from groveflow.layout import keys, run_of_model
from groveflow.marks import running_mark, serving_mark

__all__ = [
    "KINDS",
    "BucketPlace",
    "Deletion",
    "DirPlace",
    "Entry",
    "NoSuchRun",
    "OutputNotWritable",
    "Place",
    "RunIsRunning",
    "Running",
    "ServedElsewhere",
    "delete",
    "export_run",
    "fetch_run",
    "list_entries",
    "place_of",
    "plan_deletion",
    "remove",
    "running_mark",
    "runs",
    "serving_mark",
    "write_run_report",
]

INCOMPLETE = "INCOMPLETE"
"""The status of a run with no model and no running execution: it failed, was stopped or
interrupted; the same id and input again resumes it."""


class NoSuchRun(ModelNotFound):
    """No run, search or prediction of that id is stored where the command looked."""


class RunIsRunning(GroveflowError):
    """An execution of the run is running: it cannot be deleted until it ends."""


class ServedElsewhere(GroveflowError):
    """The state directory is served by a live ``groveflow serve``: delete through it."""


class OutputNotWritable(GroveflowError):
    """A report or export cannot be written where it was asked to go."""


@dataclass(frozen=True)
class Entry:
    """One stored run, search or prediction, as ``groveflow runs`` lists it.

    Parameters
    ----------
    id : str
        The run id, search id or prediction id.
    kind : {"train", "search", "predict"}
    status : str
        ``RUNNING``, ``SUCCEEDED`` (its model or predictions are committed), the newest
        execution's ``FAILED``, ``ABORTED`` or ``TIMED_OUT`` where executions are known
        (a stack), else ``INCOMPLETE``.
    trees : int or None
        Trees in its model (a search: its winner's).
    metric : str or None
        The main figure's name: ``accuracy`` or ``r2`` on the holdout, ``rows`` scored.
    value : float or None
        Its value.
    cost_usd : float or None
        What its newest succeeded execution cost on AWS (locally: would cost), in US dollars.
    created : str
        When its record was stored (ISO 8601, UTC).
    model_run : str or None
        The run holding its model: the run itself, a search's winner, a prediction's model.
    """

    id: str
    kind: str
    status: str
    trees: int | None
    metric: str | None
    value: float | None
    cost_usd: float | None
    created: str
    model_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Deletion:
    """What deleting one id removes: bucket prefixes (every version), and other stored things.

    Parameters
    ----------
    id : str
    what : list of (str, str, int)
        ``(kind, id, objects)`` for each run, search part or prediction it removes.
    prefixes : list of str
        Bucket key prefixes (``runs/<id>/``, ``map-results/runs/<id>/``...) or whole keys.
    elsewhere : list of str
        Things the place keeps beside the bucket (a local run's execution record, an
        estimator's staged dataset), in the place's own terms.
    kept : list of (str, str, str)
        ``(kind, id, delete_kind)`` for a run or prediction of the same id that it keeps,
        and the ``kind`` of :func:`delete` (``--kind``) that would delete that instead.
    """

    id: str
    what: list[tuple[str, str, int]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)

    def describe(self) -> str:
        """``search s (9 objects), search part s-c000 (4 objects)``; what it keeps of the same
        id is named: ``run x (12 objects; not prediction x, which --kind predict deletes)``."""
        items = [f"{kind} {name} ({n} objects" for kind, name, n in self.what]
        items[0] += "".join(
            f"; not {kind} {name}, which --kind {flag} deletes" for kind, name, flag in self.kept
        )
        return ", ".join(f"{item})" for item in items)


# ------------------------------------------------------------------------------ reading


def _json(place: Place, key: str) -> tuple[Any, datetime] | None:
    found = place.read(key)
    if found is None:
        return None
    try:
        return json.loads(found[0]), found[1]
    except ValueError:
        return None  # a damaged document: the entry shows what else is known


@dataclass
class _Stored:
    """What the runs under ``runs/`` say of themselves, read once.

    ``records`` holds each run's record and when it was stored (a prefix without one is no
    run's), ``documents`` each search's document; ``searches`` the ids of searches (a document,
    or a record naming its own id as ``search_id``: a search stopped before its document);
    ``part_of`` each part -> its search (see the module's docstring).
    """

    records: dict[str, tuple[Any, datetime]]
    documents: dict[str, dict[str, Any]]
    searches: set[str]
    part_of: dict[str, str]

    def parts(self, search_id: str) -> list[str]:
        """The runs ``search_id`` made besides its own, stored or only named."""
        return sorted(part for part, owner in self.part_of.items() if owner == search_id)


def _stored(place: Place, run_ids: list[str]) -> _Stored:
    with ThreadPoolExecutor(DESCRIBE_THREADS) as pool:
        records = list(pool.map(lambda run_id: _json(place, keys.request(run_id)), run_ids))
        found = list(pool.map(lambda run_id: _json(place, keys.search(run_id)), run_ids))
    stored = {r: record for r, record in zip(run_ids, records, strict=True) if record is not None}
    documents = {
        run_id: document[0]
        for run_id, document in zip(run_ids, found, strict=True)
        if document is not None and isinstance(document[0], dict)
    }
    claimed = {run_id: _search_id(record[0]) for run_id, record in stored.items()}
    searches = set(documents) | {run_id for run_id, owner in claimed.items() if owner == run_id}
    part_of = {part: s for s, document in documents.items() for part in search_parts(s, document)}
    for run_id, owner in claimed.items():
        if owner is not None and owner in searches and owner != run_id:
            part_of.setdefault(run_id, owner)
    return _Stored(stored, documents, searches, part_of)


def _search_id(record: Any) -> str | None:
    """The search a run record says its run is part of (``search_id``), if any."""
    owner = record.get("search_id") if isinstance(record, dict) else None
    return owner if is_valid_id(owner) else None


def search_model_run(place: Place, search_id: str) -> str | None:
    """The run holding a search's model (its winner), or None if the search has none yet."""
    found = _json(place, keys.search(search_id))
    if found is None or not isinstance(found[0], dict):
        return None
    winner = found[0].get("model_run_id")
    return winner if is_valid_id(winner) else None


def _model_figures(place: Place, run_id: str | None) -> tuple[int | None, str | None, Any]:
    """``(trees, metric, value)`` from a run's model manifest, or Nones without one."""
    found = _json(place, keys.manifest(run_id)) if run_id else None
    if found is None or not isinstance(found[0], dict):
        return None, None, None
    manifest = found[0]
    metrics = manifest.get("metrics") or {}
    metric = next((m for m in ("accuracy", "r2") if metrics.get(m) is not None), None)
    return manifest.get("trees_built"), metric, metrics.get(metric) if metric else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _status(
    place: Place, running: dict[str, Running], kind: str, run_id: str, committed: bool
) -> str:
    if run_id in running:
        return "RUNNING"
    if committed:
        return "SUCCEEDED"
    return place.newest_status(kind, run_id) or INCOMPLETE


def _cost_usd(place: Place, kind: str, run_id: str) -> float | None:
    cost = place.cost(kind, run_id)
    total = cost.get("total_usd") if cost else None
    return float(total) if isinstance(total, (int, float)) else None


def list_entries(place: Place) -> list[Entry]:
    """Every training run, search and prediction stored in ``place``, newest first.

    A search's parts are not listed on their own (see the module's docstring).
    """
    stored = _stored(place, place.ids(keys.RUNS))
    running = place.running()
    tasks: list[Callable[[], Entry | None]] = [
        functools.partial(_run_entry, place, run_id, stored, running)
        for run_id in stored.records
        if run_id not in stored.part_of
    ]
    tasks += [
        functools.partial(_prediction_entry, place, prediction_id, running)
        for prediction_id in place.ids(keys.PREDICTIONS)
    ]
    with ThreadPoolExecutor(DESCRIBE_THREADS) as pool:
        entries = [entry for entry in pool.map(lambda task: task(), tasks) if entry is not None]
    return sorted(entries, key=lambda e: (e.created, e.id), reverse=True)


def _run_entry(place: Place, run_id: str, stored: _Stored, running: dict[str, Running]) -> Entry:
    record = stored.records[run_id]
    kind = "search" if run_id in stored.searches else "train"
    model_run: str | None = run_id
    if kind == "search":
        winner = stored.documents.get(run_id, {}).get("model_run_id")
        model_run = winner if is_valid_id(winner) else None
    trees, metric, value = _model_figures(place, model_run)
    return Entry(
        id=run_id,
        kind=kind,
        status=_status(place, running, kind, run_id, committed=trees is not None),
        trees=trees,
        metric=metric,
        value=value,
        cost_usd=_cost_usd(place, kind, run_id),
        created=_iso(record[1]),
        model_run=model_run if trees is not None else None,
    )


def _prediction_entry(
    place: Place, prediction_id: str, running: dict[str, Running]
) -> Entry | None:
    job = _json(place, keys.predictions_job(prediction_id))
    if job is None:
        return None
    manifest = _json(place, keys.predictions_manifest(prediction_id))
    rows = manifest[0].get("n_rows") if manifest and isinstance(manifest[0], dict) else None
    model = job[0].get("model_manifest_uri") if isinstance(job[0], dict) else None
    return Entry(
        id=prediction_id,
        kind="predict",
        status=_status(place, running, "predict", prediction_id, committed=manifest is not None),
        trees=None,
        metric="rows" if rows is not None else None,
        value=rows,
        cost_usd=_cost_usd(place, "predict", prediction_id),
        created=_iso(job[1]),
        model_run=run_of_model(model) if isinstance(model, str) else None,
    )


# ----------------------------------------------------------------------------- deleting


KINDS = ("train", "search", "predict")
"""What ``kind`` (``groveflow delete --kind``) names: the KIND ``groveflow runs`` shows. A
run and a search are one side of an id, a prediction the other."""


def plan_deletion(place: Place, run_id: str, kind: str | None = None) -> Deletion:
    """What deleting ``run_id`` would remove: the run (a search: with its parts), or the
    prediction of that id.

    Parameters
    ----------
    place : Place
    run_id : str
    kind : {"train", "search", "predict"} or None, default=None
        ``"predict"`` deletes the prediction ``run_id``; ``"train"`` or ``"search"`` the run
        or search; None the run or search if one is stored, else the prediction. A run and a
        prediction of one id are unrelated: one is never deleted for the other.

    Raises
    ------
    InvalidRequest
        If ``run_id`` is not an accepted id, or ``kind`` none of :data:`KINDS`.
    NoSuchRun
        If nothing of that id (and kind) is stored, or it is a part of a search (delete the
        search).
    RunIsRunning
        If an execution of it (or of a part) is running.
    ServedElsewhere
        If a live ``groveflow serve`` serves the state directory (delete through it).
    """
    checked = check_id(run_id, name="RUN", error=InvalidRequest)
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(
            f"kind={kind!r} is not one of 'train', 'search' or 'predict' (the KIND that "
            "`groveflow runs` shows)"
        )
    endpoint = place.served_by()
    if endpoint is not None:
        raise ServedElsewhere(
            f"{place.where} is served by groveflow serve at {endpoint}, which holds its runs "
            f"too: delete through it (`groveflow delete {checked} --endpoint-url {endpoint}`)"
        )
    run_ids = place.ids(keys.RUNS)
    predicted = checked in place.ids(keys.PREDICTIONS)
    deletion = Deletion(checked)
    if kind == "predict" or (kind is None and checked not in run_ids):
        if predicted:
            _plan_prediction(place, deletion)
        if checked in run_ids:
            search = place.read(keys.search(checked)) is not None
            deletion.kept.append(("search" if search else "run", checked, "train"))
    else:
        if checked in run_ids:
            _plan_run(place, run_ids, deletion)
        if predicted:
            deletion.kept.append(("prediction", checked, "predict"))
    if not deletion.what:
        wanted = {None: "run, search or prediction", "predict": "prediction"}.get(kind)
        there = "".join(f"; there is {k} {checked}: --kind {f}" for k, _, f in deletion.kept)
        raise NoSuchRun(f"no {wanted or 'run or search'} {checked!r} in {place.where}{there}")
    _refuse_running(place, deletion)
    return deletion


def _plan_run(place: Place, run_ids: list[str], deletion: Deletion) -> None:
    """Add the run ``deletion.id`` (a search: with its parts) to ``deletion``."""
    checked = deletion.id
    stored = _stored(place, run_ids)
    owner = stored.part_of.get(checked)
    if owner is not None:
        raise NoSuchRun(
            f"{checked} is a part of search {owner!r} in {place.where}: delete the search "
            f"(`groveflow delete {owner}`), which deletes its candidates with it"
        )
    kind = "search" if checked in stored.searches else "run"
    parts = [checked, *(stored.parts(checked) if kind == "search" else [])]
    for part in parts:
        prefixes = _with_map_results(keys.run_prefix(part))
        count = sum(place.count(prefix) for prefix in prefixes)
        if count or part == checked:
            deletion.what.append((kind if part == checked else "search part", part, count))
            deletion.prefixes += prefixes
        deletion.elsewhere += place.owned_elsewhere("train", part, _data_uri(place, part))


def _plan_prediction(place: Place, deletion: Deletion) -> None:
    """Add the prediction ``deletion.id`` to ``deletion``."""
    prefixes = _with_map_results(keys.predictions_prefix(deletion.id))
    deletion.what.append(("prediction", deletion.id, sum(place.count(p) for p in prefixes)))
    deletion.prefixes += prefixes
    deletion.elsewhere += place.owned_elsewhere("predict", deletion.id, None)


def _with_map_results(prefix: str) -> list[str]:
    """``runs/<id>/`` (or ``predictions/<id>/``) and its Maps' result files' prefix; each ends
    in ``/``, so ``abc`` never matches ``abc-2``."""
    return [prefix, keys.map_results(prefix)]


def _data_uri(place: Place, run_id: str) -> str | None:
    record = _json(place, keys.request(run_id))
    data = record[0].get("data") if record and isinstance(record[0], dict) else None
    uri = data.get("uri") if isinstance(data, dict) else None
    return uri if isinstance(uri, str) else None


def _refuse_running(place: Place, deletion: Deletion) -> None:
    running = place.running()
    for _, name, _ in deletion.what:
        execution = running.get(name)
        if execution is None:
            continue
        message = (
            f"{name} has a running execution ({execution.what}): wait for it to end, or stop "
            "it, then delete"
        )
        if execution.mark is not None:
            message += (
                "; if that process is not groveflow (a killed run's process id, taken since by "
                f"another process), remove {execution.mark} and delete again"
            )
        raise RunIsRunning(message)


def remove(place: Place, deletion: Deletion) -> None:
    """Remove what :func:`plan_deletion` found, checking again that nothing of it runs."""
    _refuse_running(place, deletion)
    place.remove(deletion.prefixes, deletion.elsewhere)


# --------------------------------------------------------------------------- the API


def place_of(engine: Any = None) -> Place:
    """Where ``engine`` stores runs: a :class:`groveflow.Local` engine's state directory,
    a :class:`groveflow.Stack`'s bucket; the process's default engine's if None."""
    engine = engine if engine is not None else default_engine()
    if isinstance(engine, Local):
        return DirPlace(engine.state_dir)
    return BucketPlace(engine)


def runs(engine: Any = None) -> list[Entry]:
    """Every training run, search and prediction an engine stores, newest first.

    Parameters
    ----------
    engine : groveflow.Local, groveflow.Stack or None, default=None
        A local engine lists its state directory (``.groveflow`` by default), a stack its
        bucket and executions; None is the process's default local engine.

    Returns
    -------
    list of Entry
        Id, kind, status, trees, main metric, cost and creation time of each.
    """
    return list_entries(place_of(engine))


def delete(run_id: str, engine: Any = None, *, kind: str | None = None) -> Deletion:
    """Delete every object of a run, search (with its parts) or prediction; what went.

    On a versioned bucket every version goes. Other runs are untouched. A local engine
    running in this process forgets the run too.

    Parameters
    ----------
    run_id : str
        The run, search or prediction id.
    engine : groveflow.Local, groveflow.Stack or None, default=None
        Where it is stored (see :func:`runs`).
    kind : {"train", "search", "predict"} or None, default=None
        Which of a run and a prediction sharing the id to delete: None deletes the run
        (or search) if one is stored, else the prediction; ``"predict"`` the prediction.

    Raises
    ------
    NoSuchRun
        If nothing of that id is stored (or it is a part of a search: delete the search).
    RunIsRunning
        If an execution of it is running.
    """
    engine = engine if engine is not None else default_engine()
    place = place_of(engine)
    deletion = plan_deletion(place, run_id, kind)
    remove(place, deletion)
    running = getattr(engine, "_engine", None) if isinstance(engine, Local) else None
    if running is not None:  # its bucket, in this process's memory, holds the run too
        remove_versions(running.s3, running.bucket, deletion.prefixes)
    return deletion


# ------------------------------------------------------------------------ a run's files


@contextlib.contextmanager
def fetch_run(place: Place, run_id: str) -> Iterator[tuple[Path, str]]:
    """A finished run's model, record and held-out split as a directory, and the run's id.

    A search's id gives its winner's run. A state directory's run is its own directory;
    a bucket's is downloaded to a temporary one, removed on exit.

    Raises
    ------
    NoSuchRun
        If the run (or the search's winner) has no model manifest.
    """
    checked = check_id(run_id, name="RUN", error=InvalidRequest)
    model_run = checked
    if place.read(keys.manifest(checked)) is None:
        winner = search_model_run(place, checked)
        if winner is None:
            search = place.read(keys.search(checked)) is not None
            raise NoSuchRun(
                f"search {checked!r} in {place.where} has no model yet (has it finished?)"
                if search
                else f"no finished run {checked!r} in {place.where} (see `groveflow runs`)"
            )
        model_run = winner
    local = place.local_run_dir(model_run)
    if local is not None:
        yield local, model_run
        return
    with tempfile.TemporaryDirectory(prefix="groveflow-run-") as temp:
        yield _download_run(place, model_run, Path(temp) / "runs"), model_run


def _download_run(place: Place, run_id: str, runs: Path) -> Path:
    """The objects a report and an export read, laid out as the local mirror lays them."""
    stored = place.read(keys.manifest(run_id))
    assert stored is not None
    manifest = ModelManifest.from_json(stored[0], f"{place.where}/{keys.manifest(run_id)}")
    model = keys.model_prefix(run_id)
    wanted = [keys.request(run_id), keys.manifest(run_id), f"{model}{manifest.forest.key}"]
    decision = (manifest.oob or {}).get("decision")
    if isinstance(decision, dict) and isinstance(decision.get("key"), str):
        wanted.append(f"{model}{decision['key']}")
    source = _json(place, keys.split_source(run_id))
    split_run = run_id
    if source is not None and isinstance(source[0], dict) and is_valid_id(source[0].get("run_id")):
        wanted.append(keys.split_source(run_id))
        split_run = source[0]["run_id"]
    wanted += [keys.split(split_run, "X_test"), keys.split(split_run, "y_test")]
    for key in wanted:
        found = place.read(key)
        if found is not None:
            path = runs.parent / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(found[0])
    return runs / run_id


def write_run_report(place: Place, run_id: str, out: Path | None = None) -> Path:
    """Write the run's ``report.html`` (a search's: its winner's) and its plots; its path.

    Written to ``out``, else to ``<run_id>-report/`` in the working directory (the user's
    place, not the state directory: a read-only or shared state directory takes no writes).

    Raises
    ------
    NoSuchRun
        If the run has no model.
    OutputNotWritable
        If the report cannot be written there.
    """
    from types import SimpleNamespace

    # The report imports the Python API and the artifact (scikit-learn): loaded for a report
    # only, so listing or deleting runs starts fast.
    from groveflow.report import write_report

    with fetch_run(place, run_id) as (run_dir, _):
        target = out or Path.cwd() / f"{run_id}-report"
        _check_writable(target, directory=True, hint="pass --out DIR" if out is None else "")
        kind = "search" if place.read(keys.search(run_id)) is not None else "train"
        cost = place.cost(kind, run_id)
        estimate = CostEstimate(**cost) if cost else None
        records = place.invocations(run_id)
        invocations = [SimpleNamespace(**i) for i in records] if records else None
        with _writing(target):
            return Path(write_report(run_dir, target, invocations, estimate))


def export_run(place: Place, run_id: str, fmt: str, out: Path | None = None) -> Path:
    """Write the run's model (a search's: its winner's) as a scikit-learn file; its path.

    ``fmt`` is ``joblib`` or ``skops``; ``out`` defaults to ``<run_id>.<fmt>`` here. A model
    trained with ``data.categorical`` is written as a ``Pipeline`` (its encoding, then its
    forest) that predicts from the raw columns; loading it needs groveflow.

    Raises
    ------
    NoSuchRun
        If the run has no model.
    OutputNotWritable
        If the file cannot be written there.
    """
    from groveflow.artifact import load_forest  # scikit-learn: loaded for an export only

    target = out or Path(f"{run_id}.{fmt}")
    with fetch_run(place, run_id) as (run_dir, _):
        path = run_dir / "model" / "manifest.json"
        manifest = ModelManifest.from_json(path.read_bytes(), str(path))
        estimator = load_forest(str(run_dir / "model")).to_sklearn(manifest.kind, manifest.params)
    _check_writable(target, directory=False, hint="" if out else "pass --out FILE")
    with _writing(target):
        if fmt == "joblib":
            import joblib

            joblib.dump(estimator, target)
        else:
            import skops.io

            skops.io.dump(estimator, target)
    return target


def _check_writable(target: Path, *, directory: bool, hint: str) -> None:
    """Refuse, by name and before any work, a place a report or export cannot be written.

    ``hint`` says what to do instead (by default: choose another ``--out``)."""
    hint = hint or "choose another --out"
    if directory and target.exists() and not target.is_dir():
        raise OutputNotWritable(f"{target} is a file, not a directory: {hint}")
    if not directory and target.is_dir():
        raise OutputNotWritable(f"{target} is a directory, not a file name: {hint}")
    if not directory and not target.parent.is_dir():
        raise OutputNotWritable(f"{target}: there is no directory {target.parent}: {hint}")
    existing = target if directory and target.is_dir() else target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputNotWritable(f"{target} cannot be written ({existing} is not writable): {hint}")


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """An OSError writing at ``target`` as :class:`OutputNotWritable`, naming it."""
    try:
        yield
    except OSError as error:
        where = Path(error.filename) if error.filename else None
        if where is None or not (where == target or where.is_relative_to(target)):
            raise
        raise OutputNotWritable(f"{where} cannot be written: {error.strerror}") from None

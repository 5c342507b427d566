"""The run's documents: what each says, which versions this groveflow reads, their checks.

A model manifest (``runs/<run>/model/manifest.json``) is read by the predict functions,
``load_forest``, ``groveflow report`` and ``export``; each reads it through
:func:`check_manifest`, so a manifest written by a newer groveflow (another
``manifest_version``, another artifact ``format_version``) is refused by name instead of
being misread. A stored grove is checked by :func:`grove_problem` alone, wherever it is
read: when a builder decides to reuse it, when the merge collects it, when a prediction
scores a group of groves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

import numpy as np

from groveflow.constraints import is_integer
from groveflow.cost import STACK_ARCHITECTURE, CostEstimate
from groveflow.encoding import Encoding, stored_encoding
from groveflow.errors import ArtifactError
from groveflow.ids import is_valid_id
from groveflow.merge_memory import MergeSize
from groveflow.storage import sha256_hex

__all__ = [
    "ESTIMATE_VERSION",
    "FORMAT_VERSION",
    "JOB_VERSION",
    "MANIFEST_VERSION",
    "RECORD_VERSION",
    "SEARCH_VERSION",
    "AwsWall",
    "DataRecord",
    "EstimateRecord",
    "ForestEntry",
    "GroveRecord",
    "GroveTask",
    "LocalWall",
    "ModelManifest",
    "PredictJob",
    "RunRecord",
    "ShardTask",
    "check_manifest",
    "check_search",
    "grove_problem",
    "leaderboard",
    "new_search_record",
    "search_parts",
    "search_rank",
]

FORMAT_VERSION = 1
"""The forest file's blob layout (:mod:`groveflow.artifact`), written in its header and the
manifest as ``format_version``; other versions are refused on load."""
MANIFEST_VERSION = 1
"""The model manifest's layout, written as ``manifest_version``."""
RECORD_VERSION = 1
"""The run record's layout (``runs/<run>/run.json``), written as ``record_version``."""
JOB_VERSION = 1
"""The prediction job's layout (``predictions/<id>/job.json``), written as ``job_version``."""
SEARCH_VERSION = 1
ESTIMATE_VERSION = 1
"""The estimate's layout in the run record (:class:`EstimateRecord`), written as ``version``."""
"""The search record's layout (``runs/<search>/search.json``), written as ``search_version``."""


def _field(item: Any, name: str, kind: type, document: str) -> Any:
    value = item.get(name) if isinstance(item, dict) else None
    if kind is int and (not is_integer(value) or value < 0):
        raise ArtifactError(f"{document} {item!r}: {name} must be a whole number >= 0")
    if kind is str and (not isinstance(value, str) or not value):
        raise ArtifactError(f"{document} {item!r}: {name} must be a non-empty string")
    return value


@dataclass(frozen=True)
class GroveTask:
    """One item of a run's grove plan (``plan.json``): what one builder fits.

    Parameters
    ----------
    run_id : str
    grove : int
        The grove's number, 0-based; names ``groves/grove-NNNNN.gfa``.
    seed : int
        Its ``random_state``, from ``SeedSequence(seed).spawn``.
    n_trees : int
    """

    run_id: str
    grove: int
    seed: int
    n_trees: int

    @classmethod
    def from_item(cls, item: Any) -> GroveTask:
        """The task a Map item holds; :class:`ArtifactError` naming a damaged field."""
        document = "the grove plan's item"
        task = cls(
            run_id=_field(item, "run_id", str, document),
            grove=_field(item, "grove", int, document),
            seed=_field(item, "seed", int, document),
            n_trees=_field(item, "n_trees", int, document),
        )
        if task.n_trees < 1:
            raise ArtifactError(f"{document} {item!r}: n_trees must be at least 1")
        return task

    def to_item(self) -> dict[str, Any]:
        """The Map item (JSON) this task is written as."""
        return asdict(self)


@dataclass(frozen=True)
class ShardTask:
    """One item of a prediction's shard plan (``shards.json``): rows one Lambda scores.

    Parameters
    ----------
    prediction_id : str
    shard : int
        Names ``part-NNNNN.csv``.
    source : str
        The file the rows are in.
    file : int
        Its position among the input's files.
    start, stop : int
        The rows of ``source`` to score (``start`` included, ``stop`` excluded).
    first_row : int
        The global 0-based index of row ``start`` in the whole input.
    origin : str
        The user's file the rows came from (``source`` unless Ingest converted it); what the
        predictions' manifest names. Empty in plans written before it existed.
    """

    prediction_id: str
    shard: int
    source: str
    file: int
    start: int
    stop: int
    first_row: int
    origin: str = ""

    @classmethod
    def from_item(cls, item: Any) -> ShardTask:
        """The task a Map item holds; :class:`ArtifactError` naming a damaged field."""
        document = "the shard plan's item"
        task = cls(
            prediction_id=_field(item, "prediction_id", str, document),
            shard=_field(item, "shard", int, document),
            source=_field(item, "source", str, document),
            file=_field(item, "file", int, document),
            start=_field(item, "start", int, document),
            stop=_field(item, "stop", int, document),
            first_row=_field(item, "first_row", int, document),
            origin=_field(item, "origin", str, document) if item.get("origin") else "",
        )
        if task.stop < task.start:
            raise ArtifactError(f"{document} {item!r}: stop is before start")
        return task

    def to_item(self) -> dict[str, Any]:
        """The Map item (JSON) this task is written as."""
        return asdict(self)


def check_manifest(manifest: Any, where: str, *, document: str = "the manifest") -> dict[str, Any]:
    """``manifest`` if this groveflow can read it; else :class:`ArtifactError` naming it as
    ``f"{document} {where}"`` (``where``: its location, ``s3://...`` or a path).

    A manifest may omit both versions (a hand-written ``{"forest": {...}}`` for
    :func:`groveflow.load_forest`); a version it states must be one this groveflow reads.
    """
    where = f"{document} {where}"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} must be a JSON object")
    for name, supported in (
        ("manifest_version", MANIFEST_VERSION),
        ("format_version", FORMAT_VERSION),
    ):
        stated = manifest.get(name, supported)
        if stated != supported:
            raise ArtifactError(
                f"{where} has {name}={stated!r}; this groveflow reads {name} "
                f"{supported}: upgrade groveflow to read it (or retrain the run with this one)"
            )
    return manifest


def check_search(document: Any, where: str) -> dict[str, Any]:
    """A search record (``runs/<search>/search.json``: the input, the spec, its candidates,
    schedule, scores and survivors, then its winner) if this groveflow can read it; else
    :class:`ArtifactError` naming it (``where``: its location)."""
    if not isinstance(document, dict):
        raise ArtifactError(f"the search record {where} must be a JSON object")
    stated = document.get("search_version")
    if stated != SEARCH_VERSION:
        raise ArtifactError(
            f"the search record {where} has search_version={stated!r}; this groveflow reads "
            f"search_version {SEARCH_VERSION}: upgrade groveflow to read it"
        )
    return document


def new_search_record(
    raw: dict[str, Any],
    spec: dict[str, Any],
    candidates: dict[str, dict[str, Any]],
    rounds: list[tuple[int, int]],
    source: str,
) -> dict[str, Any]:
    """A search's record as its plan first writes it: its input and ``search`` section
    (``spec``), each candidate's run id and ``model.params``, the rounds' ``(candidates,
    trees)``, the run whose split scores them (``source``), no scores yet, all surviving."""
    return {
        "search_version": SEARCH_VERSION,
        "input": raw,
        "spec": spec,
        "candidates": [{"run_id": r, "params": p} for r, p in candidates.items()],
        "schedule": [list(r) for r in rounds],
        "source": source,
        "scores": {},
        "survivors": list(candidates),
        "trees_fitted": 0,
    }


def search_rank(score: float | None) -> float:
    """Sorts a search's candidates best first; one that lost too many groves (None) last."""
    return math.inf if score is None else -score


def leaderboard(search_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """The search's leaderboard for the winner's manifest, from its record: each candidate's
    params and its ``[trees, score]`` per round it ran, best first (the rounds run, then the
    last score, then the candidate number), with the winner and the trees fitted."""
    order = {c["run_id"]: i for i, c in enumerate(document["candidates"])}
    scores = document["scores"]
    candidates = sorted(
        document["candidates"],
        key=lambda c: (
            -len(scores[c["run_id"]]),
            search_rank(scores[c["run_id"]][-1][1]),
            order[c["run_id"]],
        ),
    )
    spec = document["spec"]
    return {
        "search_id": search_id,
        "strategy": spec["strategy"],
        "metric": spec["metric"],
        "factor": spec["factor"],
        "rounds": document["schedule"],
        "winner": document["winner"],
        "winner_params": next(
            c["params"] for c in document["candidates"] if c["run_id"] == document["winner"]
        ),
        "trees_fitted": document["trees_fitted"],
        "candidates": [
            {
                "run_id": c["run_id"],
                "params": {k: c["params"][k] for k in spec["space"]},
                "scores": document["scores"][c["run_id"]],
            }
            for c in candidates
        ],
    }


def grove_problem(
    blob: bytes, metadata: dict[str, str], *, seed: int | None = None, sha256: str | None = None
) -> str | None:
    """What is wrong with a stored grove, or None if it verifies.

    Parameters
    ----------
    blob : bytes
        The grove object.
    metadata : dict
        Its S3 user metadata, as the builder wrote it (``sha256``, ``seed``).
    seed : int or None, default=None
        The seed the plan gives the grove, if known.
    sha256 : str or None, default=None
        The checksum a model manifest recorded for it, if any.
    """
    actual = sha256_hex(blob)
    if metadata.get("sha256") != actual:
        return "its bytes do not match the checksum stored with it"
    if seed is not None and metadata.get("seed") != str(seed):
        return f"it was built with seed {metadata.get('seed')}, the plan says {seed}"
    if sha256 is not None and actual != sha256:
        return "it differs from the model manifest's sha256"
    return None


def _check_version(raw: dict[str, Any], name: str, supported: int, where: str) -> None:
    """Refuse a document of a layout this groveflow does not read (absent: the first one)."""
    stated = raw.get(name, 1)
    if stated != supported:
        raise ArtifactError(
            f"{where} has {name}={stated!r}; this groveflow reads {name} {supported}: "
            "upgrade groveflow to read it (or rerun with this one)"
        )


def _typed(raw: Any, names: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields ``names`` of the JSON object ``raw``, each checked against its JSON type.

    ``names`` maps a field to a type or tuple of types (``type(None)`` for null); a
    missing or mistyped field is an :class:`ArtifactError` naming it and ``where``.
    """
    if not isinstance(raw, dict):
        raise ArtifactError(f"{where} must be a JSON object, got {type(raw).__name__}")
    missing = [name for name in names if name not in raw]
    if missing:
        raise ArtifactError(f"{where} is not a groveflow document of its kind: it lacks {missing}")
    for name, kind in names.items():
        value = raw[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ArtifactError(f"{where}: {name}={value!r} is not of the expected type")
    return {name: raw[name] for name in names}


_NULL = type(None)


@dataclass(frozen=True)
class DataRecord:
    """What a run trained on, as its plan read it (``uri`` and a sha256 of the rows)."""

    uri: str
    sha256: str
    n_rows: int
    n_features: int
    n_train: int
    n_test: int
    test_rows_sha256: str
    shards: dict[str, Any] | None = None
    """How the split is stored when it is in row shards (:mod:`groveflow.training._shards`):
    ``{"key", "shard_rows", "rows_per_grove", "rule", "why"}`` (the shards themselves are
    listed by the document at ``key``);
    None when it is stored whole (``X_train.npy``...)."""

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> DataRecord:
        counts = ("n_rows", "n_features", "n_train", "n_test")
        kinds = {
            f.name: int if f.name in counts else str for f in fields(cls) if f.name != "shards"
        }
        shards = raw.get("shards") if isinstance(raw, dict) else None
        if shards is not None and not isinstance(shards, dict):
            raise ArtifactError(f"{where}'s data: shards={shards!r} is not an object")
        return cls(**_typed(raw, kinds, f"{where}'s data"), shards=shards)


@dataclass(frozen=True)
class AwsWall:
    """The predicted wall time of a run on AWS, in seconds, by part.

    Attributes
    ----------
    plan_seconds : float
        Reading and splitting the data and the trial (as measured), and writing the split.
    ramp_seconds : float
        Waiting for Lambda to add environments past its first 1,000.
    cold_start_seconds : float
        The plan's, the first wave of builders' and the merge's cold starts.
    s3_read_seconds : float
        Each first-wave builder reading the training split.
    groves_seconds : float
        The waves of groves, each as long as one full grove (fit and write).
    merge_seconds : float
        Reading the groves, merging, scoring the held-out rows, writing the forest.
    ingest_seconds : float, default=0.0
        ValidateRequest and Ingest, with their cold starts (CSV and Parquet).
    predict_seconds : float, default=0.0
        A ``predict`` section: its plan, a wave of shards and the finish, cold starts included.
    """

    plan_seconds: float
    ramp_seconds: float
    cold_start_seconds: float
    s3_read_seconds: float
    groves_seconds: float
    merge_seconds: float
    ingest_seconds: float = 0.0
    predict_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        """The sum of the parts."""
        return math.fsum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class LocalWall:
    """The predicted wall time of a run on the local engine with ``workers`` workers.

    Attributes
    ----------
    workers : int
    overhead_seconds : float
        The engine's own per run (:data:`LOCAL_RUN_OVERHEAD_SECONDS`, and
        :data:`LOCAL_ENGINE_START_SECONDS` on an engine just started).
    plan_seconds, groves_seconds, merge_seconds : float
        The stages, as in :class:`AwsWall`, on this machine's cores.
    """

    workers: int
    overhead_seconds: float
    plan_seconds: float
    groves_seconds: float
    merge_seconds: float

    @property
    def total_seconds(self) -> float:
        """The sum of the parts."""
        parts = (self.overhead_seconds, self.plan_seconds, self.groves_seconds, self.merge_seconds)
        return math.fsum(parts)


@dataclass(frozen=True)
class EstimateRecord:
    """A training run's predicted wall time and cost, from a trial fit on its real split, as
    the run record stores it (:class:`groveflow.estimates.RunEstimate` adds the maths).

    Attributes
    ----------
    seconds_per_tree : float
        A builder's measured work per tree (fit, OOB sums, encoding) on one vCPU, in seconds.
    grove_overhead_seconds : float
        A builder's measured work per grove besides its trees.
    merge_seconds_per_tree : float
        The merge's measured work per tree.
    trial_trees : int
        Trees in the trial grove.
    trees_per_grove : int
        ``grove_size``.
    n_trees, groves : int
        Trees in the forest and groves to build.
    concurrency : int
        Builders the Map runs at once (``max_concurrency``, clamped).
    builder_memory_mb, plan_memory_mb, merge_memory_mb : int
        Each function's memory (in MB), which bills and sets its share of a vCPU.
    split_mb : float
        The training split (features and labels, in MB), which each builder reads.
    data_mb : float
        All four splits (in MB), which the plan writes.
    grove_mb : float
        One full grove's encoded size (in MB).
    plan_seconds : float
        The plan's measured work up to the estimate: reading, splitting, the trial.
    oob : bool
        Whether the run sums out-of-bag predictions (``oob_score``): a write per grove more,
        and a read per grove more at the merge.
    ingested : bool
        Whether the run goes through ValidateRequest and Ingest (CSV, Parquet).
    aws : AwsWall
        The predicted wall time on AWS.
    cost : groveflow.cost.CostEstimate
        The predicted cost on AWS.
    local : LocalWall or None, default=None
        The predicted wall time on the local engine, when a worker count was given.
    rounds : int, default=1
        Rounds of growth: with ``n_trees: "auto"``, as many as reach ``max_trees``, the
        worst case (``n_trees`` and ``groves`` are then ``max_trees``'s), which the cap
        is checked against; each round adds a grow plan, a wave and a merge.
    reads_per_grove : bool, default=False
        Whether every grove reads its rows (``split_mb``) itself: a sample drawn across row
        shards (``rows_per_grove``), not the training split a warm builder reads once.
    merge_fixed_mb, merge_mb_per_tree : float, default=0.0
        The merge's memory model (:class:`groveflow.merge_memory.MergeSize`), from the trial
        grove: 0 in an estimate made before it was.
    architecture : str, default="arm64"
        The functions' architecture (template.yaml's ``Architecture``), which prices them.
    test_rows : int, default=0
        Held-out rows the merge scores (the predict section's scoring is priced per row
        from the merge's).
    predict_rows, predict_shards : int, default=0
        Rows a ``predict`` section scores and the shards it scores them in; 0 without one.
    grove_choice : str or None, default=None
        When the plan chose ``grove_size`` (the request left it out), what it chose and why.
    """

    seconds_per_tree: float
    grove_overhead_seconds: float
    merge_seconds_per_tree: float
    trial_trees: int
    trees_per_grove: int
    n_trees: int
    groves: int
    concurrency: int
    builder_memory_mb: int
    plan_memory_mb: int
    merge_memory_mb: int
    split_mb: float
    data_mb: float
    grove_mb: float
    plan_seconds: float
    oob: bool
    ingested: bool
    aws: AwsWall
    cost: CostEstimate
    local: LocalWall | None = None
    rounds: int = 1
    reads_per_grove: bool = False
    merge_fixed_mb: float = 0.0
    merge_mb_per_tree: float = 0.0
    version: int = ESTIMATE_VERSION
    architecture: str = STACK_ARCHITECTURE
    test_rows: int = 0
    predict_rows: int = 0
    predict_shards: int = 0
    grove_choice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dictionary, with the totals spelled out."""
        out = asdict(self)
        out["aws"]["total_seconds"] = self.aws.total_seconds
        merge = MergeSize(self.merge_fixed_mb, self.merge_mb_per_tree)
        out["merge_peak_mb"] = merge.peak_mb(self.n_trees)
        if self.local is not None:
            out["local"]["total_seconds"] = self.local.total_seconds
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> Self:
        """The estimate :meth:`to_dict` gave; ValueError naming what is missing or damaged."""
        if not isinstance(raw, dict):
            raise ValueError(f"an estimate must be an object, got {type(raw).__name__}")
        if raw.get("version") != ESTIMATE_VERSION:
            raise ValueError(f"estimate version {raw.get('version')!r}, not {ESTIMATE_VERSION}")
        try:
            values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
            values["aws"] = _parts(AwsWall, raw["aws"])
            values["cost"] = CostEstimate(**raw["cost"])
            # a record from before architectures were priced: its cost's (x86_64 then)
            values.setdefault("architecture", values["cost"].architecture)
            values["local"] = None if raw.get("local") is None else _parts(LocalWall, raw["local"])
            return cls(**values)
        except (KeyError, TypeError) as error:
            raise ValueError(f"the estimate is missing or has a damaged field: {error}") from None


def _parts(kind: Any, raw: Any) -> Any:
    return kind(**{f.name: raw[f.name] for f in fields(kind) if f.name in raw})


@dataclass(frozen=True)
class RunRecord:
    """A run's record (``runs/<run>/run.json``): the claim on its id, written once by the plan.

    Parameters
    ----------
    run_id : str
    request : dict
        The validated training request (``TrainRequest.to_dict()``).
    feature_names : list of str
    classes : list or None
        The training split's class labels (numbers or strings), None for regression.
    classes_dtype : str or None
        Their numpy dtype (``"<i8"``, ``"<U5"``...), so labels come back as they were.
    data : DataRecord
    builder_estimate_mb : int or None, default=None
        The plan's size guard: the memory (in MB) it expects one grove builder to use.
    encoding : Encoding or None, default=None
        How the raw columns became the features, when the request set ``data.categorical``.
    estimate : EstimateRecord or None, default=None
        The plan's estimate of the run's wall time and cost (:mod:`groveflow.estimates`);
        None in records written before the plan made one.
    search_id : str or None, default=None
        The search this run is part of (its own id for the search's run, which holds the
        split; the search's for each candidate); None for a training run, and in records
        written before searches said so.
    """

    run_id: str
    request: dict[str, Any]
    feature_names: list[str]
    classes: list[Any] | None
    classes_dtype: str | None
    data: DataRecord
    builder_estimate_mb: int | None = None
    encoding: Encoding | None = None
    estimate: EstimateRecord | None = None
    search_id: str | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str = "the run record") -> RunRecord:
        """The record ``raw`` holds; :class:`ArtifactError` naming a missing or damaged field."""
        kinds = {
            "run_id": str,
            "request": dict,
            "feature_names": list,
            "classes": (list, _NULL),
            "classes_dtype": (str, _NULL),
            "data": dict,
        }
        values = _typed(raw, kinds, where)
        _check_version(raw, "record_version", RECORD_VERSION, where)
        estimate = raw.get("builder_estimate_mb")
        if estimate is not None and not is_integer(estimate):
            raise ArtifactError(f"{where}: builder_estimate_mb={estimate!r} is not a whole number")
        data = DataRecord.from_dict(values["data"], where)
        encoding = stored_encoding(raw, where)
        run_estimate = None
        if raw.get("estimate") is not None:
            try:
                run_estimate = EstimateRecord.from_dict(raw["estimate"])
            except ValueError as error:
                raise ArtifactError(f"{where}: estimate: {error}") from None
        search_id = raw.get("search_id")
        if search_id is not None and (not isinstance(search_id, str) or not search_id):
            raise ArtifactError(f"{where}: search_id={search_id!r} is not a search id")
        return cls(
            **{**values, "data": data},
            builder_estimate_mb=estimate,
            encoding=encoding,
            estimate=run_estimate,
            search_id=search_id,
        )

    def to_dict(self) -> dict[str, Any]:
        encoding = self.encoding.to_dict() if self.encoding else None
        run_estimate = self.estimate.to_dict() if self.estimate else None
        return {
            "record_version": RECORD_VERSION,
            **asdict(self),
            "encoding": encoding,
            "estimate": run_estimate,
        }

    def classes_array(self) -> np.ndarray | None:
        """The class labels with the dtype they were trained with."""
        return _classes_array(self.classes, self.classes_dtype)


def _classes_array(classes: list[Any] | None, dtype: str | None) -> np.ndarray | None:
    if classes is None:
        return None
    return np.asarray(classes, dtype=np.dtype(dtype) if dtype else None)


def search_parts(search_id: str, document: dict[str, Any]) -> set[str]:
    """The runs a search's document (``runs/<search>/search.json``) names besides the search:
    its candidates, the run holding the split they are scored on (``source``: the validation
    split ``<search>-val``, or the search itself) and its winner (``model_run_id``: a
    candidate, or the refit ``<search>-final``).

    Only what the document names: an OOB search makes no ``-val`` and no ``-final``, so runs
    of those names beside it are runs of their own. A run whose :class:`RunRecord` names the
    search as its ``search_id`` is a part too (a candidate stored before the document).
    """
    named = [c.get("run_id") for c in document.get("candidates", []) if isinstance(c, dict)]
    named += [document.get("source"), document.get("model_run_id")]
    return {str(run_id) for run_id in named if is_valid_id(run_id) and run_id != search_id}


@dataclass(frozen=True)
class GroveRecord:
    """One grove of a model, as its manifest records it."""

    run_id: str
    grove: int
    seed: int
    n_trees: int
    sha256: str
    fit_seconds: float | None = None
    data: dict[str, int] | None = None
    """How the grove saw the data, when it read row shards: ``{"rows", "shards",
    "bytes_read"}`` (the rows it fitted on, the shards and bytes it read)."""

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> GroveRecord:
        kinds = {"run_id": str, "grove": int, "seed": int, "n_trees": int, "sha256": str}
        values = _typed(raw, kinds, f"{where}'s grove entry")
        seconds = raw.get("fit_seconds")
        if seconds is not None and not (is_integer(seconds) or isinstance(seconds, float)):
            raise ArtifactError(f"{where}'s grove entry: fit_seconds={seconds!r} is not a number")
        data = raw.get("data")
        if data is not None and not (
            isinstance(data, dict) and all(isinstance(v, int) for v in data.values())
        ):
            raise ArtifactError(f"{where}'s grove entry: data={data!r} is not an object of counts")
        return cls(**values, fit_seconds=seconds, data=data)


@dataclass(frozen=True)
class ForestEntry:
    """Where a manifest's forest is (``key`` below the manifest) and its sha256 and size."""

    key: str
    sha256: str
    bytes: int


def _optional_object(raw: dict[str, Any], name: str, where: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, dict):
        raise ArtifactError(f"the model manifest {where}: {name} must be an object or null")
    return value


@dataclass(frozen=True)
class ModelManifest:
    """A model's manifest (``runs/<run>/model/manifest.json``), its commit point.

    Written last by the merge; read by the predict functions, ``groveflow report`` and
    ``export`` through :meth:`from_dict`, which refuses another layout by name. Its ``where``
    is the manifest's location (``s3://.../manifest.json``, a path, ``of run <id>``): the
    messages call it "the model manifest <where>" (or, not JSON, "<where>").
    """

    run_id: str
    task: str
    kind: str
    params: dict[str, Any]
    classes: list[Any] | None
    classes_dtype: str | None
    feature_names: list[str]
    n_features: int
    trees_requested: int
    trees_built: int
    groves: list[GroveRecord]
    groves_missing: list[int]
    forest: ForestEntry
    data: DataRecord
    seed: int
    metrics: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = 1
    encoding: Encoding | None = None
    oob: dict[str, Any] | None = None
    auto: dict[str, Any] | None = None
    search: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ModelManifest:
        """The manifest ``raw`` holds; :class:`ArtifactError` naming what is wrong with it."""
        raw = check_manifest(raw, where, document="the model manifest")
        kinds = {
            "run_id": str,
            "task": str,
            "kind": str,
            "params": dict,
            "classes": (list, _NULL),
            "classes_dtype": (str, _NULL),
            "feature_names": list,
            "n_features": int,
            "trees_requested": int,
            "trees_built": int,
            "groves": list,
            "groves_missing": list,
            "forest": dict,
            "data": dict,
            "seed": int,
            "metrics": dict,
        }
        values = _typed(raw, kinds, f"the model manifest {where}")
        forest = _typed(
            values["forest"], {"key": str, "sha256": str, "bytes": int}, f"{where}'s forest"
        )
        return cls(
            **{
                **values,
                "groves": [GroveRecord.from_dict(g, where) for g in values["groves"]],
                "forest": ForestEntry(**forest),
                "data": DataRecord.from_dict(values["data"], where),
            },
            versions=dict(raw.get("versions") or {}),
            format_version=raw.get("format_version", 1),
            encoding=stored_encoding(raw, f"the model manifest {where}"),
            oob=_optional_object(raw, "oob", where),
            auto=_optional_object(raw, "auto", where),
            search=_optional_object(raw, "search", where),
        )

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> ModelManifest:
        """The manifest in the bytes ``raw``; :class:`ArtifactError` if not valid JSON."""
        import json

        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise ArtifactError(
                f"{where} is not valid JSON (truncated or damaged: {error}); "
                "retrain the run or restore the model manifest"
            ) from None
        return cls.from_dict(parsed, where)

    def to_dict(self) -> dict[str, Any]:
        encoding = self.encoding.to_dict() if self.encoding else None
        return {"manifest_version": MANIFEST_VERSION, **asdict(self), "encoding": encoding}

    def classes_array(self) -> np.ndarray | None:
        """The class labels with the dtype they were trained with."""
        return _classes_array(self.classes, self.classes_dtype)


@dataclass(frozen=True)
class PredictJob:
    """A prediction's job (``predictions/<id>/job.json``): its claim on the id and its shards.

    Parameters
    ----------
    request : dict
        The validated prediction request.
    fingerprint : dict
        What makes a repeated request the same one (the request, less what may differ
        between two executions of it).
    model_manifest_uri : str
        ``s3://bucket/.../manifest.json`` of the model that scores.
    n_rows : int
        Rows to score, over every input file.
    shards : list of ShardTask
    """

    request: dict[str, Any]
    fingerprint: dict[str, Any]
    model_manifest_uri: str
    n_rows: int
    shards: list[ShardTask]

    @classmethod
    def from_dict(cls, raw: Any, where: str = "the prediction job") -> PredictJob:
        if isinstance(raw, dict) and "fingerprint" not in raw:  # a job of an earlier groveflow
            raw = {**raw, "fingerprint": raw.get("request")}
        kinds = {
            "request": dict,
            "fingerprint": dict,
            "model_manifest_uri": str,
            "n_rows": int,
            "shards": list,
        }
        values = _typed(raw, kinds, where)
        _check_version(raw, "job_version", JOB_VERSION, where)
        return cls(**{**values, "shards": [ShardTask.from_item(s) for s in values["shards"]]})

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_version": JOB_VERSION,
            **asdict(self),
            "shards": [s.to_item() for s in self.shards],
        }

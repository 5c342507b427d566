"""The training request: the execution input, validated before anything fans out.

Every check here raises :class:`~groveflow.errors.InvalidRequest` with a message
that names the bad value and says what would be accepted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from groveflow.constraints import (
    Boolean,
    Columns,
    Constraint,
    Interval,
    Maybe,
    Options,
    Rule,
    Text,
    check_keys,
    check_section,
    check_value,
    is_integer,
    is_number,
)
from groveflow.encoding import CategoricalSpec, parse_categorical
from groveflow.errors import InvalidPredictRequest, InvalidRequest
from groveflow.ids import check_id
from groveflow.oob import check_oob_request, estimator_params

__all__ = [
    "ESTIMATORS",
    "HISTORY_EVENTS_PER_ROUND",
    "HISTORY_EVENTS_RESERVED",
    "HISTORY_EVENT_LIMIT",
    "MAX_AUTO_ROUNDS",
    "MAX_GROVES",
    "MAX_TREES",
    "DataSpec",
    "ModelSpec",
    "PredictRequest",
    "SearchSpec",
    "TrainRequest",
    "check_keys",
    "data_spec",
    "make_estimator",
    "parse_data",
    "parse_predict_request",
    "parse_search_section",
    "parse_train_request",
]

MAX_TREES = 100_000
MAX_GROVES = 10_000
MAX_CONCURRENCY = 10_000
DEFAULT_MAX_CONCURRENCY = 40

HISTORY_EVENT_LIMIT = 25_000
"""Events a Step Functions execution's history holds: past them the execution fails
(https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)."""
HISTORY_EVENTS_PER_ROUND = 18
"""Events each further round of ``n_trees: "auto"`` adds to the training execution's history:
it passes GrowRound (a Lambda task: entered, scheduled, started, succeeded, exited),
BuildGroves (a Distributed Map: entered, started, map run started and succeeded, succeeded,
exited), Merge (a task) and GrowAgain (a Choice: entered, exited). Counted from
statemachine/train.asl.json and a local run's history by tests/test_fanout_rounds.py."""
HISTORY_EVENTS_RESERVED = 5_000
"""Events kept for the rest of the run: its first pass (ingest, plan, the first round,
a prediction: under 100) and the Lambda retries of every round (three events each)."""
MAX_AUTO_ROUNDS = (HISTORY_EVENT_LIMIT - HISTORY_EVENTS_RESERVED) // HISTORY_EVENTS_PER_ROUND
"""The most rounds an ``n_trees: "auto"`` run may take, ``ceil(max_trees / round_trees)``:
more would run past Step Functions' history, so the request is refused when parsed (by
ValidateRequest, or the Plan), before anything runs."""

# Parameters groveflow sets itself: a user value would break seeding or merging.
MANAGED_PARAMS = {"n_estimators", "random_state", "n_jobs", "warm_start", "verbose"}

ESTIMATORS = {
    ("random_forest", "classification"): "RandomForestClassifier",
    ("random_forest", "regression"): "RandomForestRegressor",
    ("extra_trees", "classification"): "ExtraTreesClassifier",
    ("extra_trees", "regression"): "ExtraTreesRegressor",
}


@dataclass(frozen=True)
class DataSpec:
    """Where the training data is and which column to learn.

    Parameters
    ----------
    uri : str
        ``sklearn:NAME``, a local path, ``s3://bucket/key`` or ``s3://bucket/prefix/``.
    target : str or None, default=None
        Name of the target column (CSV, Parquet); for ``.npy`` an integer column
        index given as a string is accepted; ignored for ``sklearn:`` and ``.npz``.
    format : str or None, default=None
        ``csv``, ``parquet``, ``npy`` or ``npz``; inferred from the extension if absent.
    features : list of str or None, default=None
        Feature columns to use, by name; all columns but the target if absent. A matrix's
        (``sklearn:``, ``.npy``, ``.npz``) are its feature names: the bundled dataset's, the
        ``.npz`` file's ``feature_names``, else ``x0``, ``x1``, ... (a ``.npy`` file's columns
        once its target column is removed). A name the data lacks is refused.
    exclude : list of str, default=[]
        Columns to drop (identifiers, leakage), named as ``features`` are.
    delimiter : str, default=","
        CSV field delimiter.
    categorical : CategoricalSpec or None, default=None
        Which text columns to encode and how (:mod:`groveflow.encoding`); None refuses
        non-numeric features.
    weight : str or None, default=None
        The column (CSV, Parquet) or ``.npz`` array holding each row's sample weight, as
        ``fit(X, y, sample_weight=...)`` takes it: every grove fits with these weights,
        and the column is not a feature. Weights must be finite numbers, none negative,
        not all zero (:func:`groveflow.datasets.check_weights`). None: every row weighs 1.
    """

    uri: str
    target: str | None = None
    format: str | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    delimiter: str = ","
    categorical: CategoricalSpec | None = None
    weight: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Which estimator each grove fits.

    Parameters
    ----------
    kind : {"random_forest", "extra_trees"}, default="random_forest"
    task : {"classification", "regression"}, default="classification"
    params : dict, default={}
        scikit-learn hyperparameters (``max_depth``, ``min_samples_leaf``, ...).
    """

    kind: str = "random_forest"
    task: str = "classification"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainRequest:
    """A validated training request (the execution input).

    Parameters
    ----------
    data : DataSpec
    model : ModelSpec
    n_trees : int, default=100
        Trees in the final forest.
    grove_size : int, default=min(10, n_trees)
        Trees each grove builder fits; the last grove holds the remainder.
    seed : int, default=0
        Seeds the split and, through ``SeedSequence(seed).spawn``, every grove.
    test_fraction : float, default=0.2
        Held-out share of rows, in [0, 0.9]; 0 trains on everything and reports no metrics.
    max_concurrency : int, default=40
        Grove builders running at once.
    tolerated_failure_percentage : float, default=0
        Share of groves (0-100) that may fail while the run still succeeds.
    run_id : str or None, default=None
        Names the run's S3 prefix; the execution name when absent.
    predict : dict or None, default=None
        Rows to score with the new model once it is stored (see :mod:`groveflow.prediction`).
    auto : AutoTrees or None, default=None
        For ``n_trees: "auto"``: the forest grows in rounds while its OOB score improves;
        ``n_trees`` is then the first round's.
    max_cost_usd : float or None, default=None
        The most (in US dollars) the run may cost on AWS by the plan's estimate
        (:mod:`groveflow.estimates`); above it the plan refuses the run (``BudgetExceeded``).
    rows_per_grove : int or None, default=None
        Training rows each grove fits on: a seeded sample (stratified for classification),
        drawn across the training split's row shards, so a grove reads and holds only
        these rows. None: every grove fits on the whole training split when it fits a
        builder; otherwise the plan picks the most rows that fit and reports it.
    """

    data: DataSpec
    model: ModelSpec = field(default_factory=ModelSpec)
    n_trees: int = 100
    grove_size: int = 10
    seed: int = 0
    test_fraction: float = 0.2
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    tolerated_failure_percentage: float = 0.0
    run_id: str | None = None
    predict: dict[str, Any] | None = None
    auto: AutoTrees | None = None
    max_cost_usd: float | None = None
    rows_per_grove: int | None = None

    @property
    def n_groves(self) -> int:
        """Number of groves: ``ceil(n_trees / grove_size)``."""
        return -(-self.n_trees // self.grove_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :func:`parse_train_request` accepts back."""
        out = asdict(self)
        out["data"]["features"] = list(self.data.features) if self.data.features else None
        out["data"]["exclude"] = list(self.data.exclude)
        del out["auto"]
        if self.rows_per_grove is None:
            del out["rows_per_grove"]  # as records written before rows_per_grove read
        if self.auto is not None:
            out.update(n_trees="auto", **asdict(self.auto))
        if self.data.categorical is None:
            del out["data"]["categorical"]  # as records written before data.categorical read
        else:
            out["data"]["categorical"] = self.data.categorical.to_dict()
        if self.data.weight is None:
            del out["data"]["weight"]  # as records written before data.weight read
        if self.max_cost_usd is None:
            del out["max_cost_usd"]  # as records written before max_cost_usd read
        return out


DATA_FORMATS = ("csv", "npy", "npz", "parquet")
CONVERTED_FORMAT = "columns"
"""The ``format`` of the columnar copy a run's conversion step writes (never a user's)."""

DATA: dict[str, Constraint | None] = {
    "uri": Text(),
    "target": Maybe(
        Rule(
            lambda v: is_integer(v) or (isinstance(v, str) and bool(v)),
            "{name} must be a non-empty string, got {value!r}",
        )
    ),
    "format": Maybe(Options(DATA_FORMATS)),
    "features": Maybe(Columns()),
    "exclude": Columns(),
    "delimiter": Rule(
        lambda v: isinstance(v, str) and len(v) == 1 and v not in '"\r\n',
        "{name} must be one character (not a quote), got {value!r}",
    ),
    "categorical": None,  # parse_categorical
    "weight": Maybe(Text()),
}
"""The ``data`` section: where the rows are, which column to learn, how to read them."""
DATA_KEYS = set(DATA)


def parse_data(
    value: Any,
    *,
    error: type[Exception] = InvalidRequest,
    allowed: set[str] = DATA_KEYS,
    section: str = "data",
) -> DataSpec:
    """Validate a ``data`` section: the one parser, for training and for prediction.

    Parameters
    ----------
    value : object
        The section as given.
    error : type of Exception, default=InvalidRequest
        What a bad section raises (``InvalidPredictRequest`` for a prediction's).
    allowed : set of str, default=DATA_KEYS
        The keys the section may hold (a prediction's has no target or features).
    section : str, default="data"
        Its name in messages.
    """
    if not isinstance(value, dict):
        raise error(f"{section} must be an object with a 'uri', got {value!r}")
    table = {key: DATA[key] for key in allowed}
    check_section(section, value, table, prefix=f"{section}.", error=error)
    if "uri" not in value:
        raise error(f"{section}.uri is missing: give sklearn:NAME, a path or an s3:// URI")
    target = value.get("target")
    features = value.get("features")
    spec = DataSpec(
        uri=value["uri"],
        target=None if target is None else str(target),
        format=value.get("format"),
        features=None if features is None else tuple(features),
        exclude=tuple(value.get("exclude", ())),
        delimiter=value.get("delimiter", ","),
        categorical=parse_categorical(value.get("categorical"), f"{section}.categorical", error),
        weight=value.get("weight"),
    )
    if spec.target is not None and spec.target in (spec.features or ()) + spec.exclude:
        raise error(f"{section}.target {spec.target!r} is also listed as a feature or excluded")
    _check_weight_column(spec, section, error)
    _check_categorical(spec, section, error)
    return spec


def _check_weight_column(spec: DataSpec, section: str, error: type[Exception]) -> None:
    """Refuse a ``weight`` column that is also the target, a feature, excluded or encoded:
    the weight column is read as each row's weight and nothing else."""
    weight = spec.weight
    if weight is None:
        return
    if weight == spec.target:
        raise error(f"{section}.weight {weight!r} is the target: name the column of row weights")
    if weight in (spec.features or ()):
        raise error(
            f"{section}.weight {weight!r} is listed in {section}.features: the weight column "
            "is never a feature; remove it from features"
        )
    if weight in spec.exclude:
        raise error(
            f"{section}.weight {weight!r} is listed in {section}.exclude: the weight column is "
            "read as the rows' weights (and is never a feature); remove it from exclude"
        )
    if spec.categorical is not None and weight in spec.categorical.named():
        raise error(
            f"{section}.categorical names the weight column {weight!r}: it is not a feature"
        )


def _check_categorical(spec: DataSpec, section: str, error: type[Exception]) -> None:
    """Refuse ``categorical`` naming the target, an excluded column, or an unused feature."""
    if spec.categorical is None:
        return
    named = spec.categorical.named()
    for column in named:
        if column == spec.target:
            raise error(f"{section}.categorical names the target {column!r}: it is not a feature")
        if column in spec.exclude:
            raise error(f"{section}.categorical names {column!r}, which {section}.exclude drops")
    unused = [c for c in named if spec.features is not None and c not in spec.features]
    if unused:
        raise error(f"{section}.categorical names {unused}, not among {section}.features")


MODEL: dict[str, Constraint | None] = {
    "kind": Options(tuple(sorted({kind for kind, _ in ESTIMATORS}))),
    "task": Options(tuple(sorted({task for _, task in ESTIMATORS}))),
    "params": Rule(lambda v: isinstance(v, dict), "{name} must be an object, got {value!r}"),
}
"""The ``model`` section: the estimator each grove fits (``params`` then go to scikit-learn's
own constraints, :func:`_validate_params`)."""
MODEL_KEYS = set(MODEL)


def make_estimator(
    kind: str,
    task: str,
    params: dict[str, Any],
    *,
    n_trees: int,
    seed: int,
    classes: Any = None,
) -> Any:
    """The scikit-learn estimator one grove fits (``n_jobs=1``; the pool gives parallelism).

    ``classes`` (the training labels' classes) turn a ``class_weight`` dict's keys, which
    JSON makes strings, back into the labels they name: ``{"0": 1, "1": 5}`` weighs the
    integer classes 0 and 1.
    """
    from sklearn import ensemble

    if classes is not None and params.get("class_weight") is not None:
        params = {**params, "class_weight": _class_weight_for(params["class_weight"], classes)}
    cls = getattr(ensemble, ESTIMATORS[(kind, task)])
    params = estimator_params(params)  # a grove never scores itself: see groveflow.oob
    return cls(n_estimators=n_trees, random_state=seed, n_jobs=1, **params)


def _class_weight_for(class_weight: Any, classes: Any) -> Any:
    if isinstance(class_weight, list):
        return [_class_weight_for(weights, classes) for weights in class_weight]
    if not isinstance(class_weight, dict):
        return class_weight  # "balanced", "balanced_subsample"
    by_name = {str(label): label for label in classes.tolist()}
    return {by_name.get(str(key), key): weight for key, weight in class_weight.items()}


def _validate_params(kind: str, task: str, params: dict[str, Any]) -> None:
    from sklearn.utils._param_validation import InvalidParameterError

    managed = MANAGED_PARAMS & set(params)
    if managed:
        raise InvalidRequest(
            f"model.params may not set {sorted(managed)}: groveflow sets them from n_trees, "
            "grove_size and seed"
        )
    probe = make_estimator(kind, task, {}, n_trees=1, seed=0)
    allowed = set(probe.get_params()) - MANAGED_PARAMS
    check_keys("model.params", params, allowed)
    check_oob_request(kind, params)
    params = estimator_params(params)
    try:
        probe.set_params(**params)
        probe._validate_params()
    except (InvalidParameterError, ValueError, TypeError) as error:
        raise InvalidRequest(f"model.params: {error}") from None
    if (
        not params.get("bootstrap", kind == "random_forest")
        and params.get("max_samples") is not None
    ):
        raise InvalidRequest("model.params.max_samples needs bootstrap=true")
    if task == "regression" and params.get("class_weight") is not None:
        raise InvalidRequest("model.params.class_weight applies to classification only")


def _parse_model(value: Any) -> ModelSpec:
    if not isinstance(value, dict):
        raise InvalidRequest(f"model must be an object, got {value!r}")
    check_section("model", value, MODEL, prefix="model.")
    spec = ModelSpec(**{**value, "params": dict(value.get("params", {}))})
    _validate_params(spec.kind, spec.task, spec.params)
    return spec


N_TREES = Interval(int, 1, MAX_TREES)
TRAIN: dict[str, Constraint | None] = {
    "data": None,  # parse_data
    "model": None,  # _parse_model
    "n_trees": None,  # "auto" (_parse_auto) or N_TREES
    "max_trees": Interval(int, 1, MAX_TREES),
    "round_trees": Interval(int, 1, MAX_TREES),  # and at most max_trees: _parse_auto
    "oob_tolerance": Interval(float, 0, 1),
    "grove_size": Interval(int, 1, MAX_TREES),
    "seed": Interval(int, 0, 2**32 - 1),
    "test_fraction": Interval(float, 0.0, 0.9),
    "max_concurrency": Interval(int, 1, MAX_CONCURRENCY),
    "tolerated_failure_percentage": Interval(float, 0.0, 100.0),
    "run_id": None,  # groveflow.ids.check_id
    "predict": Maybe(
        Rule(
            lambda v: isinstance(v, dict),
            "{name} must be an object with a 'data' section, got {value!r}",
        )
    ),
    "max_cost_usd": Maybe(
        Interval(
            float,
            0,
            math.inf,
            closed="neither",
            message="{name} must be a positive number of US dollars (e.g. 0.05), got {value!r}",
        )
    ),
    "rows_per_grove": Maybe(Interval(int, 2, 2**40)),
}
"""The execution input's top level: how many trees, in groves of how many, seeded how."""
TOP_KEYS = set(TRAIN)


def parse_train_request(value: Any) -> TrainRequest:
    """Validate an execution input and return the request it describes.

    Raises
    ------
    InvalidRequest
        Naming the first problem found and what would be accepted.
    """
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"the execution input must be a JSON object, got {type(value).__name__}"
        )
    _refuse_misplaced_keys(value)
    check_keys("the execution input", value, TOP_KEYS)
    if "data" not in value:
        raise InvalidRequest("the execution input has no 'data' section (with a 'uri')")
    auto = _parse_auto(value)
    n_trees = (
        auto.round_trees if auto else check_value("n_trees", value.get("n_trees", 100), N_TREES)
    )
    check_section("the execution input", value, TRAIN)
    grove_size = value.get("grove_size", min(10, n_trees))
    _check_groves(n_trees, grove_size, auto)
    run_id = value.get("run_id")
    if run_id is not None:
        run_id = check_id(run_id, name="run_id")
    _refuse_sampled_weights(value)
    max_cost_usd = value.get("max_cost_usd")
    return TrainRequest(
        data=parse_data(value["data"]),
        model=_parse_model(value.get("model", {})),
        n_trees=n_trees,
        grove_size=grove_size,
        seed=value.get("seed", 0),
        test_fraction=float(value.get("test_fraction", 0.2)),
        max_concurrency=value.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        tolerated_failure_percentage=float(value.get("tolerated_failure_percentage", 0)),
        run_id=run_id,
        predict=_parse_predict(value.get("predict")),
        auto=auto,
        max_cost_usd=None if max_cost_usd is None else float(max_cost_usd),
        rows_per_grove=value.get("rows_per_grove"),
    )


def _check_groves(n_trees: int, grove_size: int, auto: AutoTrees | None) -> None:
    """Refuse groves larger than the forest, or more of them than a run builds."""
    if grove_size > n_trees:
        raise InvalidRequest(f"grove_size={grove_size} is larger than n_trees={n_trees}")
    if auto is not None and -(-auto.max_trees // grove_size) > MAX_GROVES:
        raise InvalidRequest(
            f"max_trees={auto.max_trees} in groves of {grove_size} makes more than {MAX_GROVES} "
            "groves; raise grove_size"
        )
    if -(-n_trees // grove_size) > MAX_GROVES:
        raise InvalidRequest(
            f"n_trees={n_trees} in groves of {grove_size} makes more than {MAX_GROVES} groves; "
            "raise grove_size"
        )


def _refuse_sampled_weights(value: dict[str, Any]) -> None:
    """Refuse ``data.weight`` with ``rows_per_grove``: a grove's sample is drawn across row
    shards, which hold features and labels only, so its weights could not be the rows'."""
    data = value.get("data")
    if (
        isinstance(data, dict)
        and data.get("weight") is not None
        and value.get("rows_per_grove") is not None
    ):
        raise InvalidRequest(
            f"data.weight={data['weight']!r} cannot be combined with rows_per_grove="
            f"{value['rows_per_grove']!r}: each grove samples rows across row shards, which "
            "do not carry weights; remove rows_per_grove (every grove then fits the whole "
            "training split, weighted) or data.weight"
        )


def _refuse_misplaced_keys(value: dict[str, Any]) -> None:
    """Refuse a ``data`` or ``model`` key given at the top level, naming where it belongs."""
    for key, given in value.items():
        if key in TOP_KEYS:
            continue
        for section, keys in (("data", DATA_KEYS), ("model", MODEL_KEYS)):
            if key in keys:
                raise InvalidRequest(
                    f"{key!r} is not a top-level key of the execution input: it belongs in "
                    f"the {section} section, as {section}.{key} "
                    f'({{"{section}": {{..., "{key}": {json.dumps(given, default=str)}}}}})'
                )


@dataclass(frozen=True)
class AutoTrees:
    """How ``n_trees: "auto"`` grows a forest: rounds of ``round_trees`` more trees while the
    OOB score improves by at least ``oob_tolerance``, up to ``max_trees``."""

    max_trees: int = 500
    round_trees: int = 50
    oob_tolerance: float = 0.001


AUTO_KEYS = ("max_trees", "round_trees", "oob_tolerance")


def _parse_auto(value: dict[str, Any]) -> AutoTrees | None:
    given = [key for key in AUTO_KEYS if key in value]
    if value.get("n_trees") != "auto":
        if given:
            raise InvalidRequest(f"{given} apply only with n_trees='auto'")
        return None
    model = value.get("model", {})
    params = model.get("params", {}) if isinstance(model, dict) else {}
    if not isinstance(params, dict) or params.get("oob_score") is not True:
        raise InvalidRequest(
            "n_trees='auto' grows the forest while its OOB score improves: set "
            "model.params.oob_score=true (and keep bootstrap)"
        )
    default = AutoTrees()
    max_trees = check_value(
        "max_trees", value.get("max_trees", default.max_trees), Interval(int, 1, MAX_TREES)
    )
    round_trees = check_value(
        "round_trees",
        value.get("round_trees", min(default.round_trees, max_trees)),
        Interval(int, 1, max_trees),
    )
    tolerance = check_value(
        "oob_tolerance", value.get("oob_tolerance", default.oob_tolerance), Interval(float, 0, 1)
    )
    rounds = -(-max_trees // round_trees)
    if rounds > MAX_AUTO_ROUNDS:
        raise InvalidRequest(
            f"n_trees='auto' with max_trees={max_trees} and round_trees={round_trees} may grow "
            f"in {rounds} rounds, more than the {MAX_AUTO_ROUNDS} that Step Functions' history "
            f"holds ({HISTORY_EVENT_LIMIT:,} events, {HISTORY_EVENTS_PER_ROUND} a round): raise "
            f"round_trees to at least {-(-max_trees // MAX_AUTO_ROUNDS)}, or lower max_trees"
        )
    return AutoTrees(max_trees=max_trees, round_trees=round_trees, oob_tolerance=tolerance)


def _parse_predict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if "model" in value:
        raise InvalidRequest(
            "predict.model is not accepted in a training input: the run's model is used"
        )
    return dict(value)


# ----------------------------------------------------------------------------- predict

DEFAULT_SHARD_ROWS = 100_000
MAX_SHARDS = 10_000


@dataclass(frozen=True)
class PredictRequest:
    """A validated prediction request (the predict execution input, or a run's ``predict``).

    Parameters
    ----------
    model : str
        ``s3://bucket/.../manifest.json`` (or its directory), or a run id in the stack's bucket.
    data : dict
        ``uri`` (file or prefix), and optionally ``format``, ``delimiter``, ``id_column``,
        ``exclude``.
    shard_rows : int, default=100000
        Rows per shard: each predict Lambda scores at most this many.
    probabilities : bool, default=False
        Also write one ``proba_<class>`` column per class (classification).
    trees_per_group : int or None, default=None
        Score the forest a group of groves at a time (for forests too big for one
        Lambda's memory); the answers are exactly the whole forest's.
    max_concurrency : int, default=40
    prediction_id : str or None, default=None
        Names the output prefix; the execution name when absent.
    """

    model: str
    data: dict[str, Any]
    shard_rows: int = DEFAULT_SHARD_ROWS
    probabilities: bool = False
    trees_per_group: int | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    prediction_id: str | None = None


MODEL_NAME = Rule(
    lambda v: isinstance(v, str), "'model' must name a model: s3://.../manifest.json or a run id"
)
ROWS = Rule(
    lambda v: isinstance(v, dict) and isinstance(v.get("uri"), str) and bool(v["uri"]),
    "'data' must be an object with a 'uri' of the rows to score",
)
ID_COLUMN = Maybe(Text("a column name"))
PREDICT: dict[str, Constraint | None] = {
    "model": MODEL_NAME,
    "data": ROWS,
    "shard_rows": Interval(int, 1, 10**7),
    "probabilities": Boolean(),
    "trees_per_group": Maybe(Interval(int, 1, 10**6)),
    "max_concurrency": Interval(int, 1, MAX_CONCURRENCY),
    "prediction_id": None,  # groveflow.ids.check_id
}
"""The prediction request: which model scores which rows, in shards of how many."""
PREDICT_KEYS = set(PREDICT)
PREDICT_DATA: dict[str, Constraint | None] = {
    **{key: DATA[key] for key in ("uri", "format", "delimiter", "exclude")},
    "id_column": ID_COLUMN,
}
"""The rows a prediction scores: a ``data`` section without target, features or weights."""
PREDICT_DATA_KEYS = set(PREDICT_DATA)


def parse_predict_request(value: Any, *, model_required: bool = True) -> PredictRequest:
    """Validate a prediction request (the predict execution input, or a run's ``predict``).

    Raises
    ------
    InvalidPredictRequest
        Naming the bad value and what would be accepted.
    """
    if not isinstance(value, dict):
        raise InvalidPredictRequest(f"the prediction request must be a JSON object, got {value!r}")
    check_keys("the prediction request", value, PREDICT_KEYS, InvalidPredictRequest)
    model = value.get("model", "" if not model_required else None)
    model = check_value("model", model, MODEL_NAME, InvalidPredictRequest)
    if model_required and not model:
        raise InvalidPredictRequest("'model' must name a model: s3://.../manifest.json or a run id")
    data = check_value("data", value.get("data"), ROWS, InvalidPredictRequest)
    check_keys("the prediction data", data, PREDICT_DATA_KEYS, InvalidPredictRequest)
    data_spec(data)  # format, delimiter and exclude, by the training request's own rules
    check_value("data.id_column", data.get("id_column"), ID_COLUMN, InvalidPredictRequest)
    check_section("the prediction request", value, PREDICT, error=InvalidPredictRequest)
    prediction_id = value.get("prediction_id")
    if prediction_id is not None:
        prediction_id = check_id(prediction_id, name="prediction_id", error=InvalidPredictRequest)
    return PredictRequest(
        model=model,
        data=dict(data),
        shard_rows=value.get("shard_rows", DEFAULT_SHARD_ROWS),
        probabilities=value.get("probabilities", False),
        trees_per_group=value.get("trees_per_group"),
        max_concurrency=value.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        prediction_id=prediction_id,
    )


def data_spec(data: dict[str, Any]) -> DataSpec:
    """The rows to score, as :func:`parse_data` reads a ``data`` section."""
    rows = {key: value for key, value in data.items() if key != "id_column"}
    converted = rows.get("format") == CONVERTED_FORMAT  # the run's ingested copy of the rows
    if converted:
        rows.pop("format")
    spec = parse_data(rows, error=InvalidPredictRequest, allowed=PREDICT_DATA_KEYS - {"id_column"})
    return replace(spec, format=CONVERTED_FORMAT) if converted else spec


# ------------------------------------------------------------------------------ search

STRATEGIES = ("grid", "random", "halving")
METRICS = ("oob", "validation")
DISTRIBUTIONS: dict[str, tuple[Rule, ...]] = {
    "uniform": (),
    "loguniform": (Rule(lambda b: b[0] > 0, "{name} needs low > 0, got {value!r}"),),
    "randint": (
        Rule(lambda b: all(map(is_integer, b)), "{name} needs whole numbers, got {value!r}"),
    ),
}
"""The distributions a ``search.space`` dimension may be drawn from, and what each adds to
the bounds' rules (:data:`BOUNDS`, :data:`SMALL_BOUNDS`)."""
MAX_CANDIDATES = 200
"""The most candidates a search takes: the leaderboard travels in the Merge step's output,
which Step Functions caps at 256 KB (about 200 bytes a candidate)."""


@dataclass(frozen=True)
class SearchSpec:
    """A validated ``search`` section.

    Parameters
    ----------
    space : dict
        ``model.params`` name to a list of values, or (random sampling) to
        ``{"uniform": [a, b]}``, ``{"loguniform": [a, b]}`` or ``{"randint": [a, b]}``
        (``b`` excluded, as scipy's ``randint``).
    strategy : {"grid", "random", "halving"}, default="halving"
        ``grid`` and ``random`` score every candidate once at ``trees_per_round`` trees;
        ``halving`` keeps the best ``1 / factor`` each round and multiplies their trees by
        ``factor``.
    n_candidates : int or None, default=None
        Candidates drawn (random, or halving over a random draw); None takes the grid.
    metric : {"oob", "validation"}, default="oob"
    factor : int, default=3
    trees_per_round : int, default=min(20, n_trees)
        Trees per candidate in the first round.
    validation_fraction : float, default=0.2
        With ``metric="validation"``, the share of the training split candidates are scored on.
    """

    space: dict[str, Any]
    strategy: str = "halving"
    n_candidates: int | None = None
    metric: str = "oob"
    factor: int = 3
    trees_per_round: int = 20
    validation_fraction: float = 0.2


SPACE = Rule(
    lambda v: isinstance(v, dict) and bool(v),
    "search.space is empty: give model.params names and their values, e.g. "
    '{{"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 5]}}',
)
SEARCH: dict[str, Constraint | None] = {
    "space": SPACE,
    "strategy": Options(STRATEGIES, message="{name}={value!r}; accepted: {accepted}"),
    "n_candidates": Maybe(Interval(int, 1, MAX_CANDIDATES)),
    "metric": Options(METRICS, message="{name}={value!r}; accepted: {accepted}"),
    "factor": Interval(int, 2, 100),
    "trees_per_round": Interval(int, 1, MAX_TREES),  # and at most n_trees
    "validation_fraction": Interval(float, 0, 1, closed="neither"),
}
"""A search's ``search`` section: which candidates, ranked how, in rounds of how many trees."""
SEARCH_KEYS = set(SEARCH)


def parse_search_section(raw: dict[str, Any], n_trees: int) -> SearchSpec:
    """Validate a ``search`` section, for a search whose winner grows to ``n_trees``."""
    check_section("search", raw, SEARCH, prefix="search.")
    space = check_value("search.space", raw.get("space"), SPACE)
    for name, values in space.items():
        _check_dimension(f"search.space.{name}", values)
    strategy = raw.get("strategy", "halving")
    n_candidates = raw.get("n_candidates")
    sampled = [n for n, v in space.items() if isinstance(v, dict)]
    if n_candidates is None and (strategy == "random" or sampled):
        raise InvalidRequest(
            f"search.n_candidates is needed to sample {sampled or 'the space'} "
            f"(strategy={strategy!r})"
        )
    if strategy == "grid" and sampled:
        raise InvalidRequest(f"search.strategy='grid' needs lists; {sampled} are distributions")
    trees = raw.get("trees_per_round", min(20, n_trees))
    return SearchSpec(
        space=dict(space),
        strategy=strategy,
        n_candidates=n_candidates,
        metric=raw.get("metric", "oob"),
        factor=raw.get("factor", 3),
        trees_per_round=check_value("search.trees_per_round", trees, Interval(int, 1, n_trees)),
        validation_fraction=float(raw.get("validation_fraction", 0.2)),
    )


def _check_dimension(where: str, values: Any) -> None:
    """One dimension of ``search.space``: a list of values, or a distribution's bounds."""
    if isinstance(values, list):
        if not values:
            raise InvalidRequest(f"{where} is an empty list: give at least one value")
        return
    if not isinstance(values, dict) or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
        raise InvalidRequest(
            f"{where}={values!r}: give a list of values or one of "
            + ", ".join(f'{{"{d}": [a, b]}}' for d in DISTRIBUTIONS)
        )
    ((kind, bounds),) = values.items()
    for constraint in (BOUNDS, SMALL_BOUNDS, *DISTRIBUTIONS[kind]):
        check_value(f"{where}.{kind}", bounds, constraint)


def _low_below_high(bounds: Any) -> bool:
    numbers = isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds)
    return numbers and bool(bounds[0] < bounds[1])


BOUNDS = Rule(_low_below_high, "{name} must be [low, high] with low < high, got {value!r}")
SMALL_BOUNDS = Rule(
    lambda b: all(abs(v) <= 2**62 for v in b) and math.isfinite(b[1] - b[0]),
    "{name}: bounds {value!r} are too large; give values within +-2**62",
)

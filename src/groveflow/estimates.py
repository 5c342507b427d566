"""What a training run will take and cost, measured on the real split before any fan-out.

The plan (and ``groveflow estimate``) fits a trial grove with the run's own parameters on the
training split, times what a grove builder does per tree (fit, OOB sums, encoding) and what the
merge does per tree (decoding, re-encoding, scoring the held-out rows), and scales that by the
run's shape: groves, trees per grove, the concurrency the Map will run at, the memory each
function is given. Every other figure is a named constant below, with where it comes from.

The model
---------
AWS wall = plan + ramp + cold starts + S3 read of the split + waves x grove + merge, where

- waves = ceil(groves / environments), environments = min(groves, concurrency): a warm
  builder takes the next grove, so only the first wave pays a cold start and reads the split
  (the builder caches it across warm invocations);
- a grove's fit = (overhead + trees per grove x seconds per tree) x the vCPU factor,
  ``max(1, 1769 / builder memory)``: a grove fits single-threaded (``n_jobs=1``), so a share
  of a vCPU below 1 slows it and more than one vCPU does not help;
- ramp = 10 s for every 1,000 environments past the first 1,000 (Lambda's scaling rate);
- merge = reading the groves ``GROVE_READERS`` at a time, then per tree x the vCPU factor.

Cost = the Lambda GB-seconds those durations bill at the configured memories and the stack's
architecture (a cold start's INIT included), one request per invocation, Ingest's ephemeral
storage above 512 MB, the state transitions of a training run (:data:`PARENT_STATES` plus two
per grove child), its S3 requests (each stage's, counted below, and the Maps' ItemReader and
ResultWriter) and its CloudWatch Logs (:data:`LOG_BYTES_PER_INVOCATION`), priced by
:func:`groveflow.cost.estimate_cost`. A CSV or Parquet run adds ValidateRequest and Ingest
(:data:`VALIDATE_SECONDS`; Ingest reading its input and writing the columnar copy at
:data:`INGEST_MB_PER_SECOND`); a ``predict`` section adds PlanPredictions, a ScoreShard per
shard (scoring as the merge scores its held-out rows, per row and tree) and
FinishPredictions, for as many rows as the training data has (the plan does not read the rows
to score). With ``n_trees: "auto"`` the estimate is the worst case, every round up to
``max_trees`` (each further round a grow plan, at least one wave and a merge of the whole
forest), and the cap is checked against it.

Grove size
----------
When the request leaves ``grove_size`` out, :func:`choose_grove_size` picks it from the trial:
the fewest groves (so the fewest cold starts, whose billed INIT is most of a small grove's
cost) whose estimated wall stays within :data:`GROVE_WALL_MARGIN` of the fastest grove size's,
each grove fitting a builder's memory. The run's summary states the INIT share it leaves
against :data:`INIT_SHARE_TARGET`.

Local wall = a fixed engine overhead + the plan + ceil(groves / workers) x (grove + dispatch) +
the merge, with the same measured per-tree seconds (the local engine runs ``workers`` builders
at once, one core each).

Constants and sources (checked 2026-12-01)
------------------------------------------
- :data:`LAMBDA_MB_PER_VCPU`: "At 1,769 MB, a function has the equivalent of one vCPU (one
  vCPU-second of credits per second)", https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
- :data:`LAMBDA_NEW_ENVIRONMENTS_PER_PERIOD`, :data:`LAMBDA_SCALING_PERIOD_SECONDS`: "for each
  function, your concurrency scaling rate is 1,000 execution environment instances every 10
  seconds", https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html
- :data:`COLD_START_SECONDS`: an assumption, not a measurement: AWS describes cold starts from
  under 100 ms to over a second for ordinary functions
  (https://aws.amazon.com/blogs/compute/operating-lambda-performance-optimization-part-1/), and
  data-science packages (numpy, scipy, scikit-learn: our ~190 MB layer) take longer to import
  (https://fourtheorem.com/optimise-python-data-science-aws-lambda/). docs/deploy.md's cost
  table assumes about 3 s per builder including it. Replace it with the ``Init Duration`` of a
  deployed stack's ``REPORT`` lines when you have them.
- :data:`S3_MB_PER_SECOND`: "Make one concurrent request for each 85-90 MB/s of desired
  network throughput", https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/horizontal-scaling-and-request-parallelization-for-high-throughput.html
  (one GET per object here, so the lower figure per object).
- :data:`S3_LATENCY_SECONDS`, :data:`S3_GETS_PER_SECOND_PER_PREFIX`: "at least ... 5,500
  GET/HEAD requests per second per partitioned Amazon S3 prefix" and "small object latencies
  (and first-byte-out latencies for larger objects) of roughly 100-200 milliseconds",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html
- Prices and transition counting: :mod:`groveflow.cost`; :data:`PARENT_STATES`,
  :data:`INGEST_STATES`, :data:`ROUND_STATES` and :data:`END_STATES`: the states
  statemachine/train.asl.json enters.
- :data:`DEFAULT_MEMORY_MB`: template.yaml's ``PlanMemorySize`` and ``MergeMemorySize`` defaults.
- :data:`ARCHITECTURE`, :data:`VALIDATE_MEMORY_MB`, :data:`INGEST_STORAGE_MB`: template.yaml's
  ``Architecture`` default, ValidateRequest's ``MemorySize``, ``IngestStorageSize``'s default.
- :data:`VALIDATE_SECONDS`, :data:`INGEST_MB_PER_SECOND`: measured on the local engine, not
  on AWS (their docstrings say how); ``python benchmarks/estimate.py --charges`` sets each
  category beside a local run's.
- :data:`LOG_BYTES_PER_INVOCATION`: the handlers' own lines measured on the local engine
  (675 bytes an invocation, 2026-12-07), Lambda's START/END/REPORT lines, and CloudWatch's 26
  bytes an event (https://aws.amazon.com/cloudwatch/pricing/).
- :data:`STEP_FUNCTIONS_S3_READS`, :data:`STEP_FUNCTIONS_S3_WRITES`, :data:`INGEST_PART_MB`:
  the ASL's ItemReader and ResultWriter, and :mod:`groveflow.ingest`'s part size.
- :data:`PREDICT_STATES`: the states statemachine/train.asl.json enters for a ``predict``
  section.
- :data:`GROVE_WALL_MARGIN`, :data:`INIT_SHARE_TARGET`, :data:`GROVE_SIZE_LADDER`: this
  project's choices for :func:`choose_grove_size` (issue 28), which keeps to
  :data:`MAX_GROVES` (:mod:`groveflow.request`'s: the Distributed Map's scale).
- :data:`TRIAL_TARGET_SECONDS`: issue 19 asks for a trial of about 0.5-2 s.
- :data:`CONSTANTS_CHECKED`: the date the sources above were read.
- :data:`PLAN_S3_REQUESTS`, :data:`GROW_PLAN_S3_REQUESTS`, :data:`GROVE_S3_REQUESTS`,
  :data:`FIRST_GROVE_S3_REQUESTS`, :data:`MERGE_S3_REQUESTS`: counted in
  :mod:`groveflow.training` (each costs a latency on the critical path; the merge's grove
  reads :data:`GROVE_READERS` at a time: the merge's own choice, held here so that the merge
  and this model read one figure).
- :data:`LOCAL_RUN_OVERHEAD_SECONDS`, :data:`LOCAL_INVOCATION_OVERHEAD_SECONDS`,
  :data:`LOCAL_S3_REQUEST_SECONDS`, :data:`LOCAL_S3_MB_PER_SECOND`: measured on the local
  engine (2 workers, 2 cores, 2026-12-01) from the stage times of a run of 40 one-tree groves,
  which ``python benchmarks/estimate.py`` prints again beside its estimates;
  :data:`LOCAL_ENGINE_START_SECONDS` from a command-line run on a fresh engine.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from groveflow import cost
from groveflow.documents import AwsWall, EstimateRecord, LocalWall
from groveflow.errors import BudgetExceeded, InvalidRequest
from groveflow.fan_out import fan_out_concurrency
from groveflow.layout import grove_seeds
from groveflow.merge_memory import MergeSize, merge_size
from groveflow.oob import grove_oob, wants_oob
from groveflow.request import MAX_GROVES, TrainRequest, make_estimator

__all__ = [
    "AWS",
    "COLD_START_SECONDS",
    "CONSTANTS_CHECKED",
    "DEFAULT_MEMORY_MB",
    "END_STATES",
    "FIRST_GROVE_S3_REQUESTS",
    "GROVE_S3_REQUESTS",
    "GROW_PLAN_S3_REQUESTS",
    "INGEST_STATES",
    "LAMBDA_MB_PER_VCPU",
    "LAMBDA_NEW_ENVIRONMENTS_PER_PERIOD",
    "LAMBDA_SCALING_PERIOD_SECONDS",
    "LOCAL_ENGINE_START_SECONDS",
    "LOCAL_INVOCATION_OVERHEAD_SECONDS",
    "LOCAL_RUN_OVERHEAD_SECONDS",
    "LOCAL_S3_MB_PER_SECOND",
    "LOCAL_S3_REQUEST_SECONDS",
    "MERGE_S3_REQUESTS",
    "PARENT_STATES",
    "PLAN_S3_REQUESTS",
    "ROUND_STATES",
    "S3_GETS_PER_SECOND_PER_PREFIX",
    "S3_LATENCY_SECONDS",
    "S3_MB_PER_SECOND",
    "TRIAL_TARGET_SECONDS",
    "AwsWall",
    "EstimateCheck",
    "LocalWall",
    "Platform",
    "RunEstimate",
    "Trial",
    "check_budget",
    "check_growth_budget",
    "choose_grove_size",
    "estimate_run",
    "measure_trial",
    "priced",
    "run_s3_requests",
    "vcpu_factor",
]

GROVE_READERS = 32
"""Groves the merge fetches and verifies at once: as many as the S3 client's connection pool
holds (``max_pool_connections=64`` in :mod:`groveflow.storage`). On AWS each reader waits
on S3's latency, so more readers divide the merge's time by as many."""
CONSTANTS_CHECKED = "2026-12-01"

# ------------------------------------------------------------ AWS (sources in the docstring)
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_NEW_ENVIRONMENTS_PER_PERIOD = 1000
LAMBDA_SCALING_PERIOD_SECONDS = 10.0
COLD_START_SECONDS = 2.0  # an assumption for the scikit-learn layer; see the docstring
ARCHITECTURE = cost.STACK_ARCHITECTURE
"""template.yaml's default ``Architecture``, which prices the functions' duration."""
VALIDATE_MEMORY_MB = 512
"""template.yaml's ValidateRequestFunction ``MemorySize``."""
VALIDATE_SECONDS = 0.05
"""ValidateRequest's work after its INIT: parsing the request (it reads no data); 38 ms
measured on the local engine (2026-12-07)."""
INGEST_STORAGE_MB = 10240
"""template.yaml's default ``IngestStorageSize``: its ``/tmp`` above 512 MB is charged."""
INGEST_MB_PER_SECOND = 10.0
"""Ingest's conversion of CSV or Parquet to columnar parts, per MB of the split's float32
size, besides its S3 transfers: 18,000 rows of 64 integer features (4.5 MB as float32) took
0.56 s on the local engine (2026-12-07)."""
LOG_BYTES_PER_INVOCATION = 1150
"""CloudWatch Logs ingested per invocation: the handler's own lines (675 bytes measured on
the local engine: two lines a grove), Lambda's START, END and REPORT lines (about 340 bytes),
and 26 bytes an event."""
S3_MB_PER_SECOND = 85.0
S3_LATENCY_SECONDS = 0.1
S3_GETS_PER_SECOND_PER_PREFIX = 5500
DEFAULT_MEMORY_MB = 3008
"""template.yaml's default ``PlanMemorySize`` and ``MergeMemorySize`` (the plan is not told
the stack's values, so the estimate assumes the defaults)."""

PARENT_STATES = (
    "PrepareData",
    "NoConversion",
    "Plan",
    "BuildGroves",
    "Merge",
    "GrowAgain",
    "PredictRequested",
)
"""The states a training run without a ``predict`` section enters in one round, less its end
(``Trained``); one transition each (statemachine/train.asl.json)."""
INGEST_STATES = ("ValidateRequest", "Ingest")
"""Entered instead of ``NoConversion`` when the data is CSV or Parquet."""
ROUND_STATES = ("GrowRound", "BuildGroves", "Merge", "GrowAgain")
"""Entered again by each further round of ``n_trees: "auto"``."""
PREDICT_STATES = ("PlanPredictions", "ScoreShards", "FinishPredictions")
"""Entered besides when the request has a ``predict`` section."""
END_STATES = 1  # Trained

# ------------------------------------------------------------ S3 requests (training.py's)
PLAN_S3_REQUESTS = 8
"""The plan's requests besides reading the data: the record's lookup and claim, the splits'
checks and four writes, the grove plan."""
GROVE_S3_REQUESTS = 2
"""A builder's per grove: the check for a stored grove and the grove's write (one more, the
OOB sums, with ``oob_score``)."""
FIRST_GROVE_S3_REQUESTS = 3
"""A builder's once per environment (then cached): the run record, ``X_train``, ``y_train``."""
GROW_PLAN_S3_REQUESTS = 3
"""A further round's plan: the run record, the listing of stored groves, the round's plan."""
MERGE_S3_REQUESTS = 6
"""The merge's besides the groves: the record, the test split (2), the listing, the forest's
and the manifest's writes (each grove one more read, and its OOB sums another)."""

STEP_FUNCTIONS_S3_READS = 1
"""A Distributed Map's ItemReader: the plan (or the shards' plan) read once."""
STEP_FUNCTIONS_S3_WRITES = 2
"""A Distributed Map's ResultWriter: the manifest and the SUCCEEDED results file."""
INGEST_PART_MB = 8
"""The columnar copy's part size (MiB of columns): a write by Ingest and a read by the plan."""

# ------------------------------------------------------------ grove size (chosen)
GROVE_WALL_MARGIN = 0.05
"""A chosen ``grove_size`` may lengthen the estimated wall by at most this share of the
fastest grove size's."""
INIT_SHARE_TARGET = 0.25
"""The share of the run's cost its billed INIT is aimed to stay under (stated in the
summary, with the share reached when the wall margin does not allow it)."""
GROVE_SIZE_LADDER = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)
"""The grove sizes :func:`choose_grove_size` tries (up to ``n_trees``), besides ``n_trees``."""

# ------------------------------------------------------------ local engine (measured)
LOCAL_RUN_OVERHEAD_SECONDS = 0.1
"""Starting an execution, the interpreter's states and the follower's last poll, per run."""
LOCAL_INVOCATION_OVERHEAD_SECONDS = 0.007
"""Dispatching one invocation to a worker and back, and its Map child, per invocation."""
LOCAL_S3_REQUEST_SECONDS = 0.0025
"""One request to the local S3 server, which serves every worker from the engine's process."""
LOCAL_S3_MB_PER_SECOND = 400.0
"""The local S3 server's throughput for one object, up or down."""
LOCAL_ENGINE_START_SECONDS = 1.7
"""A run on an engine this process has just started: forking the workers, which import
scikit-learn, and each function's first (cold) import in them (``groveflow train
events/train-digits.json`` from the command line: 2.2 and 2.8 s against 0.7 s warm)."""

# ------------------------------------------------------------ the trial
TRIAL_TARGET_SECONDS = 1.0
"""The trial grove is as many trees (at most ``grove_size``) as take about this long."""


def vcpu_factor(memory_mb: int) -> float:
    """How much slower a single-threaded fit runs at ``memory_mb`` than on a whole vCPU.

    Lambda gives a function CPU in proportion to its memory, one vCPU at
    :data:`LAMBDA_MB_PER_VCPU`; a grove fits on one thread, so above that it is 1.
    """
    if memory_mb <= 0:
        raise ValueError(f"memory_mb={memory_mb} must be > 0")
    return max(1.0, LAMBDA_MB_PER_VCPU / memory_mb)


@dataclass(frozen=True)
class Trial:
    """What the trial grove measured, per tree, on the machine that ran it.

    Attributes
    ----------
    trees : int
        Trees in the trial grove.
    seconds : float
        Its whole measurement (fit, OOB sums, encoding, decoding, scoring), in seconds.
    seconds_per_tree : float
        A builder's work per tree: fit, OOB sums when asked for, encoding.
    grove_overhead_seconds : float
        A builder's work per grove, whatever its trees (the one-tree fit less a tree).
    merge_seconds_per_tree : float
        The merge's work per tree: decoding, re-encoding, scoring the held-out rows.
    grove_mb_per_tree : float
        Encoded size (in MB) per tree.
    nodes_per_tree : float, default=0.0
        Nodes per tree (the merge's memory, :mod:`groveflow.merge_memory`).
    """

    trees: int
    seconds: float
    seconds_per_tree: float
    grove_overhead_seconds: float
    merge_seconds_per_tree: float
    grove_mb_per_tree: float
    nodes_per_tree: float = 0.0


def measure_trial(
    request: TrainRequest,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
) -> Trial:
    """Fit a trial grove with the run's parameters on the training split and time it.

    One tree first, then a grove of ``k`` trees, ``k`` (at most ``grove_size``, which the
    size guard has let fit in memory) chosen so it takes about :data:`TRIAL_TARGET_SECONDS`.
    What scikit-learn checks only at fit time against the data (``monotonic_cst`` with
    multiclass targets, missing values, ``max_samples`` above the row count...) is refused
    here, by name, instead of in every grove builder.

    Raises
    ------
    InvalidRequest
        If the parameters do not fit this data.
    """
    seed = grove_seeds(request.seed, 1)[0]
    # A first fit imports what scikit-learn imports lazily: not a tree's time.
    _builder_seconds(request, X_train[:64], y_train[:64], 1, seed, check=False)
    began = time.perf_counter()
    one = _builder_seconds(request, X_train, y_train, 1, seed)[0]
    k = max(1, min(request.grove_size, math.ceil(TRIAL_TARGET_SECONDS / max(one, 1e-6))))
    if k == 1:
        per_tree, overhead = one, 0.0
        seconds, blob = _builder_seconds(request, X_train, y_train, 1, seed)
    else:
        seconds, blob = _builder_seconds(request, X_train, y_train, k, seed)
        per_tree = max((seconds - one) / (k - 1), seconds / k / 2)
        overhead = max(0.0, seconds - k * per_tree)
    merge_per_tree = _merge_seconds(blob, X_test) / k
    return Trial(
        trees=k,
        seconds=time.perf_counter() - began,
        seconds_per_tree=per_tree,
        grove_overhead_seconds=overhead,
        merge_seconds_per_tree=merge_per_tree,
        grove_mb_per_tree=len(blob) / 2**20 / k,
        nodes_per_tree=_nodes(blob) / k,
    )


def _builder_seconds(
    request: TrainRequest,
    X: np.ndarray,
    y: np.ndarray,
    n_trees: int,
    seed: int,
    *,
    check: bool = True,
) -> tuple[float, bytes]:
    """What one builder does for a grove of ``n_trees``, timed; and the grove's bytes.

    ``check=False`` (the warm-up on a few rows) lets a fit fail quietly: the real split
    is what the parameters are checked against."""
    # The artifact (scikit-learn's trees) where a trial runs, not at the top: the CLI and the
    # console read a stored estimate (RunEstimate) without loading it.
    from groveflow import artifact

    model = request.model
    classes = np.unique(y) if model.task == "classification" else None
    if check and classes is not None:
        _check_class_weight(model.params.get("class_weight"), classes)
    estimator = make_estimator(
        model.kind, model.task, model.params, n_trees=n_trees, seed=seed, classes=classes
    )
    started = time.perf_counter()
    try:
        estimator.fit(X, y)
    except (ValueError, TypeError) as error:
        if not check:
            return 0.0, b""
        raise InvalidRequest(f"model.params do not fit this dataset: {error}") from None
    if wants_oob(model.params):
        grove_oob(estimator, X)
    fitted = estimator.classes_ if model.task == "classification" else None
    blob = artifact.encode_trees(estimator.estimators_, n_features=X.shape[1], classes=fitted)
    return time.perf_counter() - started, blob


def _check_class_weight(class_weight: Any, classes: np.ndarray) -> None:
    """Refuse a ``class_weight`` key that names no class of the target, naming the key and
    the classes (scikit-learn's message lists the classes it finds no weight for). Keys
    are matched to labels by their text, as :func:`groveflow.request.make_estimator` does."""
    labels = classes.tolist()
    texts = {str(label) for label in labels}
    for weights in class_weight if isinstance(class_weight, list) else [class_weight]:
        unknown = (
            [key for key in weights if str(key) not in texts] if isinstance(weights, dict) else []
        )
        if unknown:
            raise InvalidRequest(
                f"model.params.class_weight names {unknown}, not classes of the target; the "
                f"classes are {labels}"
            )


def _nodes(blob: bytes) -> int:
    """The nodes of an encoded grove's trees."""
    from groveflow import artifact  # scikit-learn: see _builder_seconds

    return int(artifact.decode_trees(blob)._meta.n_nodes)


def _merge_seconds(blob: bytes, X_test: np.ndarray | None) -> float:
    """What the merge does with a grove's trees: decode, re-encode, score the held-out rows."""
    from groveflow import artifact  # scikit-learn: see _builder_seconds

    started = time.perf_counter()
    grove = artifact.decode_trees(blob)
    artifact.encode_forest_file(grove)
    if X_test is not None and len(X_test):
        grove.n_jobs = 1
        if grove.classes_ is not None:
            grove.predict_proba(X_test)
        else:
            grove.predict(X_test)
    return time.perf_counter() - started


@dataclass(frozen=True)
class RunEstimate(EstimateRecord):
    """A training run's predicted wall time and cost (its stored fields:
    :class:`groveflow.documents.EstimateRecord`), with the maths that reads them."""

    @property
    def cost_usd(self) -> float:
        """The predicted AWS cost, in US dollars."""
        return self.cost.total_usd

    @property
    def aws_seconds(self) -> float:
        """The predicted AWS wall time, in seconds."""
        return self.aws.total_seconds

    def local_wall(self, workers: int, *, cold_engine: bool = False) -> LocalWall:
        """The predicted wall time on the local engine with ``workers`` worker processes
        (``cold_engine``: on an engine started for this run, as by the command line)."""
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        parallel = min(workers, self.concurrency, self.groves)
        waves = math.ceil(self.groves / parallel) + self.rounds - 1
        request = LOCAL_S3_REQUEST_SECONDS
        grove = (
            self._grove_fit_seconds(1.0)
            + self._grove_requests() * request
            + self.grove_mb / LOCAL_S3_MB_PER_SECOND
            + LOCAL_INVOCATION_OVERHEAD_SECONDS
        )
        # Once per worker, then cached; a sampled grove reads its own.
        reads = FIRST_GROVE_S3_REQUESTS * request + self.split_mb / LOCAL_S3_MB_PER_SECOND
        if self.reads_per_grove:
            grove, reads = grove + reads, 0.0
        merge = self.rounds * (
            (MERGE_S3_REQUESTS + self.groves * self._merge_reads_per_grove()) * request
            + self.n_trees * self.merge_seconds_per_tree
            + 2 * self.groves * self.grove_mb / LOCAL_S3_MB_PER_SECOND  # read, then written
            + LOCAL_INVOCATION_OVERHEAD_SECONDS
        ) + (self.rounds - 1) * (
            GROW_PLAN_S3_REQUESTS * request + LOCAL_INVOCATION_OVERHEAD_SECONDS
        )
        return LocalWall(
            workers=workers,
            overhead_seconds=LOCAL_RUN_OVERHEAD_SECONDS
            + (LOCAL_ENGINE_START_SECONDS if cold_engine else 0.0),
            plan_seconds=self.plan_seconds
            + PLAN_S3_REQUESTS * request
            + self.data_mb / LOCAL_S3_MB_PER_SECOND
            + LOCAL_INVOCATION_OVERHEAD_SECONDS,
            groves_seconds=waves * grove + reads,
            merge_seconds=merge,
        )

    def _grove_requests(self) -> int:
        return GROVE_S3_REQUESTS + (1 if self.oob else 0)

    def _merge_reads_per_grove(self) -> int:
        return 2 if self.oob else 1

    def _grove_fit_seconds(self, factor: float) -> float:
        return (self.grove_overhead_seconds + self.trees_per_grove * self.seconds_per_tree) * factor

    @property
    def aws_grove_seconds(self) -> float:
        """One grove's fit on a builder of ``builder_memory_mb`` on AWS (its CPU share), as
        the trial grove predicts it, with the first read of the training split."""
        first_read = FIRST_GROVE_S3_REQUESTS * S3_LATENCY_SECONDS + self.split_mb / S3_MB_PER_SECOND
        return self._grove_fit_seconds(vcpu_factor(self.builder_memory_mb)) + first_read

    @classmethod
    def of(cls, record: EstimateRecord) -> RunEstimate:
        """The estimate a run record holds, with its maths."""
        return cls(**{f.name: getattr(record, f.name) for f in fields(record)})

    @property
    def merge_size(self) -> MergeSize:
        """The merge's memory model: its peak for any number of trees like the trial's."""
        return MergeSize(self.merge_fixed_mb, self.merge_mb_per_tree)

    def summary(self) -> dict[str, Any]:
        """The few figures the plan's output carries (it must stay small)."""
        return {
            "cost_usd": round(self.cost_usd, 6),
            "aws_seconds": round(self.aws_seconds, 2),
            "seconds_per_tree": round(self.seconds_per_tree, 6),
        }


def estimate_run(
    request: TrainRequest,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    *,
    builder_memory_mb: int,
    plan_memory_mb: int = DEFAULT_MEMORY_MB,
    merge_memory_mb: int = DEFAULT_MEMORY_MB,
    concurrency: int | None = None,
    plan_seconds: float = 0.0,
    ingested: bool = False,
    workers: int | None = None,
    scale_to: tuple[int, int, int] | None = None,
    architecture: str = ARCHITECTURE,
) -> RunEstimate:
    """Measure a trial grove on the real split and predict the run's wall time and cost.

    Parameters
    ----------
    request : TrainRequest
    X_train, y_train : ndarray
        The training split, as the builders will read it.
    X_test : ndarray or None, default=None
        The held-out features the merge scores.
    builder_memory_mb : int
        Each grove builder's memory (in MB).
    plan_memory_mb, merge_memory_mb : int, default=3008
        The plan's and the merge's memory (in MB).
    concurrency : int or None, default=None
        Builders at once; ``min(max_concurrency, groves)`` if None.
    plan_seconds : float, default=0.0
        What the plan has spent so far (reading and splitting the data), in seconds.
    ingested : bool, default=False
        Whether the data goes through Ingest (CSV, Parquet): two more states.
    workers : int or None, default=None
        Also predict the local engine's wall time with this many workers.
    scale_to : (int, int, int) or None, default=None
        When the split given is a sample of the run's (a run in row shards): the rows each
        grove fits on, the held-out rows, and the training rows each grove reads (more
        than it fits on when it samples them). A tree's time is scaled as ``n log n`` in
        rows, its size and the data read linearly, the merge's scoring by the held-out rows.
    architecture : {"arm64", "x86_64"}, default="arm64"
        The stack's ``Architecture``, which prices the functions' duration.

    Returns
    -------
    RunEstimate

    Raises
    ------
    InvalidRequest
        If the model's parameters do not fit this data (see :func:`measure_trial`).
    """
    trial = measure_trial(request, X_train, y_train, X_test)
    split_mb = (X_train.nbytes + y_train.nbytes) / 2**20
    test_mb = 0.0 if X_test is None else (X_test.nbytes + 8 * len(X_test)) / 2**20
    reads_per_grove = False
    n_train, n_test = len(X_train), 0 if X_test is None else len(X_test)
    if scale_to is not None:
        fit_rows, n_test, n_train = scale_to
        trial, _, test_mb = _scaled(trial, X_train, X_test, fit_rows, n_test)
        split_mb = n_train * (X_train.shape[1] * 4 + 8) / 2**20
        reads_per_grove = fit_rows < n_train
    merge = merge_size(
        encoded_bytes_per_tree=trial.grove_mb_per_tree * 2**20,
        nodes_per_tree=trial.nodes_per_tree,
        n_values=len(np.unique(y_train)) if request.model.task == "classification" else 1,
        n_test=n_test,
        n_features=X_train.shape[1],
        n_train=n_train,
        oob=wants_oob(request.model.params),
        test_whole=scale_to is None,
    )
    n_trees, rounds = request.n_trees, 1
    if request.auto is not None and request.auto.max_trees > n_trees:
        rounds += math.ceil((request.auto.max_trees - n_trees) / request.auto.round_trees)
        n_trees = request.auto.max_trees
    groves = math.ceil(n_trees / request.grove_size)
    environments = fan_out_concurrency(concurrency or request.max_concurrency, items=groves)
    shape = RunEstimate(
        seconds_per_tree=trial.seconds_per_tree,
        grove_overhead_seconds=trial.grove_overhead_seconds,
        merge_seconds_per_tree=trial.merge_seconds_per_tree,
        trial_trees=trial.trees,
        trees_per_grove=request.grove_size,
        n_trees=n_trees,
        groves=groves,
        concurrency=environments,
        builder_memory_mb=builder_memory_mb,
        plan_memory_mb=plan_memory_mb,
        merge_memory_mb=merge_memory_mb,
        split_mb=split_mb,
        data_mb=split_mb + test_mb,
        grove_mb=trial.grove_mb_per_tree * request.grove_size,
        plan_seconds=plan_seconds + trial.seconds,
        oob=wants_oob(request.model.params),
        ingested=ingested,
        aws=AwsWall(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        cost=cost.estimate_cost([], 0),
        rounds=rounds,
        reads_per_grove=reads_per_grove,
        merge_fixed_mb=merge.fixed_mb,
        merge_mb_per_tree=merge.mb_per_tree,
        architecture=architecture,
        test_rows=n_test,
    )
    if request.predict is not None:
        rows = n_train + n_test  # the plan does not read the rows to score: as many
        shard_rows = int(request.predict.get("shard_rows", 100_000))
        shape = replace(shape, predict_rows=rows, predict_shards=math.ceil(rows / shard_rows))
    shape = priced(shape)
    local = None if workers is None else shape.local_wall(workers)
    return replace(shape, local=local)


@dataclass(frozen=True)
class Platform:
    """Where the functions run, as the estimate sees it: one S3 request's latency and one
    object's throughput, and a cold start's INIT (all in seconds, MB/s)."""

    s3_latency_seconds: float
    s3_mb_per_second: float
    cold_start_seconds: float


AWS = Platform(S3_LATENCY_SECONDS, S3_MB_PER_SECOND, COLD_START_SECONDS)
"""Lambda and S3 in one region (the constants above)."""


def priced(shape: RunEstimate, platform: Platform | None = None) -> RunEstimate:
    """``shape`` with its AWS wall and cost computed from its measured and counted parts
    (``platform``: AWS's unless given another's, e.g. the local engine's for a comparison
    with its REPORT lines)."""
    aws, invocations = _on_aws(shape, platform)
    transitions = (
        len(PARENT_STATES)
        + END_STATES
        + (len(INGEST_STATES) - 1 if shape.ingested else 0)
        + len(ROUND_STATES) * (shape.rounds - 1)
        + cost.child_transitions(shape.groves, shape.groves)
    )
    if shape.predict_shards:
        transitions += len(PREDICT_STATES) + cost.child_transitions(
            shape.predict_shards, shape.predict_shards
        )
    reads, writes = _s3_requests(shape)
    estimate = cost.estimate_cost(
        invocations,
        transitions,
        architecture=shape.architecture,
        s3_read_requests=reads,
        s3_write_requests=writes,
        log_bytes=len(invocations) * LOG_BYTES_PER_INVOCATION,
    )
    return replace(shape, aws=aws, cost=estimate)


def _s3_requests(shape: RunEstimate) -> tuple[int, int]:
    """The run's S3 requests: (GET/HEAD, PUT/LIST), every stage's and the Maps', as counted
    in the calls a local run of each stage records (:mod:`groveflow.local.access_log`)."""
    # plan: the record's lookup, the splits' check and the data (reads); the claim, four
    # splits and the grove plan (writes)
    reads, writes = 3, PLAN_S3_REQUESTS - 2
    first_wave = shape.groves if shape.reads_per_grove else shape.concurrency
    reads += FIRST_GROVE_S3_REQUESTS * first_wave + shape.groves  # and each grove's check
    writes += shape.groves * (shape._grove_requests() - 1)
    merge_reads = 3 + shape.groves * shape._merge_reads_per_grove()
    reads += shape.rounds * merge_reads + (shape.rounds - 1) * 2
    writes += shape.rounds * (MERGE_S3_REQUESTS - 3) + (shape.rounds - 1)
    reads += STEP_FUNCTIONS_S3_READS * shape.rounds
    writes += STEP_FUNCTIONS_S3_WRITES * shape.rounds
    if shape.ingested:
        sections = 2 if shape.predict_shards else 1  # the rows to score are converted too
        parts = sections * max(1, math.ceil(shape.data_mb / INGEST_PART_MB))
        reads += sections + 8  # Ingest reads each input; the plan its parts' manifest, columns
        writes += 4 * parts + 1 + 3  # each part in a multipart upload; the plan's listings
    if shape.predict_shards:
        more_reads, more_writes = _predict_s3_requests(shape.predict_shards)
        reads, writes = reads + more_reads, writes + more_writes
    return reads, writes


def _predict_s3_requests(shards: int) -> tuple[int, int]:
    """A ``predict`` section's S3 requests (GET/HEAD, PUT/LIST) for ``shards`` shards."""
    # PlanPredictions: the model's manifest and forest, the rows' manifest, the claim's
    # lookup (8); the job and the shards (3 with a listing). Each shard: the job, the
    # model, its rows (5); its part. FinishPredictions: the job and each part; the manifest.
    reads = 8 + 5 * shards + 2 + shards + 1 + STEP_FUNCTIONS_S3_READS
    writes = 3 + shards + 1 + STEP_FUNCTIONS_S3_WRITES
    return reads, writes


def run_s3_requests(
    shape: RunEstimate | None, invocations: Sequence[cost.InvocationLike]
) -> tuple[int, int]:
    """A run's S3 requests as it ran (GET/HEAD, PUT/LIST), for its summary's cost: the
    estimate's count (:func:`priced`) at the groves, rounds, cold builders and prediction
    shards its invocations show (retries included), with the run's own shape (``shape``:
    its stored estimate, for OOB, sampled rows and the data's size). Lambda does not report
    a function's S3 requests and S3's request metrics are per bucket and per day, so they
    are counted, not read. Without ``shape`` (a prediction of its own, or a run refused
    before its record, or no training plan among ``invocations``) only a ``predict``
    section's are counted."""
    calls = Counter(getattr(i, "function", None) for i in invocations)
    shards = calls["ScoreShardFunction"]
    if shape is None or not calls["PlanFunction"]:  # no training run's plan in these
        return _predict_s3_requests(shards) if shards else (0, 0)
    builders = [i for i in invocations if getattr(i, "function", None) == "BuildGroveFunction"]
    cold = sum(1 for i in builders if getattr(i, "init_ms", None))
    built = replace(
        shape,
        groves=calls["BuildGroveFunction"],
        concurrency=cold,
        rounds=max(1, calls["MergeFunction"]),
        ingested=calls["IngestFunction"] > 0,
        predict_shards=shards,
    )
    return _s3_requests(built)


def _scaled(
    trial: Trial, X_train: np.ndarray, X_test: np.ndarray | None, fit_rows: int, test_rows: int
) -> tuple[Trial, float, float]:
    """A trial on a sample, scaled to a grove of ``fit_rows`` rows and ``test_rows`` held out."""
    n = max(len(X_train), 2)
    rows = max(fit_rows, 2)
    row_mb = (X_train.shape[1] * 4 + 8) / 2**20
    scaled = replace(
        trial,
        seconds_per_tree=trial.seconds_per_tree * (rows * math.log2(rows)) / (n * math.log2(n)),
        grove_mb_per_tree=trial.grove_mb_per_tree * rows / n,
        nodes_per_tree=trial.nodes_per_tree * rows / n,
        merge_seconds_per_tree=trial.merge_seconds_per_tree
        * test_rows
        / max(1, 0 if X_test is None else len(X_test)),
    )
    return scaled, fit_rows * row_mb, test_rows * row_mb


def _on_aws(
    shape: RunEstimate, platform: Platform | None = None
) -> tuple[AwsWall, list[cost.Billed]]:
    """The wall time on AWS by part, and the invocations it bills (``platform``: AWS's
    S3 and cold starts unless given another's)."""
    platform = platform or AWS

    environments = shape.concurrency
    waves = math.ceil(shape.groves / environments) + shape.rounds - 1
    write_grove = (
        shape._grove_requests() * platform.s3_latency_seconds
        + shape.grove_mb / platform.s3_mb_per_second
    )
    grove = shape._grove_fit_seconds(vcpu_factor(shape.builder_memory_mb)) + write_grove
    read = (
        FIRST_GROVE_S3_REQUESTS * platform.s3_latency_seconds
        + shape.split_mb / platform.s3_mb_per_second
        + 2 * environments / S3_GETS_PER_SECOND_PER_PREFIX  # X and y, every first-wave builder
    )
    plan = (
        shape.plan_seconds
        + PLAN_S3_REQUESTS * platform.s3_latency_seconds
        + shape.data_mb / platform.s3_mb_per_second
    )
    readers = min(GROVE_READERS, shape.groves)
    merge = (
        MERGE_S3_REQUESTS * platform.s3_latency_seconds
        + platform.s3_latency_seconds
        * math.ceil(shape.groves * shape._merge_reads_per_grove() / readers)
        + shape.groves * shape.grove_mb / (platform.s3_mb_per_second * readers)
        + shape.n_trees * shape.merge_seconds_per_tree * vcpu_factor(shape.merge_memory_mb)
        + shape.groves * shape.grove_mb / platform.s3_mb_per_second  # the forest, written once
    )
    grow_plan = GROW_PLAN_S3_REQUESTS * platform.s3_latency_seconds
    ramp = LAMBDA_SCALING_PERIOD_SECONDS * (
        (environments - 1) // LAMBDA_NEW_ENVIRONMENTS_PER_PERIOD
    )
    wall = AwsWall(
        plan_seconds=plan,
        ramp_seconds=ramp,
        cold_start_seconds=3 * platform.cold_start_seconds,
        s3_read_seconds=read,
        groves_seconds=waves * grove,
        merge_seconds=shape.rounds * merge + (shape.rounds - 1) * grow_plan,
    )
    init_ms = platform.cold_start_seconds * 1000
    invocations = [_billed("PlanFunction", plan, shape.plan_memory_mb, init_ms)]
    if shape.reads_per_grove:  # every grove reads its sample
        grove, read = grove + read, 0.0
        wall = replace(wall, groves_seconds=waves * grove, s3_read_seconds=0.0)
    for number in range(shape.groves):
        first = number < environments
        seconds = grove + (read if first else 0.0)
        invocations.append(
            _billed(
                "BuildGroveFunction", seconds, shape.builder_memory_mb, init_ms if first else None
            )
        )
    invocations.append(_billed("MergeFunction", merge, shape.merge_memory_mb, init_ms))
    for _ in range(shape.rounds - 1):
        invocations.append(_billed("PlanFunction", grow_plan, shape.plan_memory_mb, None))
        invocations.append(_billed("MergeFunction", merge, shape.merge_memory_mb, None))
    if shape.ingested:
        ingest = (
            3 * platform.s3_latency_seconds
            + 2 * shape.data_mb / platform.s3_mb_per_second  # read, then the columnar copy written
            + shape.data_mb / INGEST_MB_PER_SECOND
        )
        invocations.append(
            _billed("ValidateRequestFunction", VALIDATE_SECONDS, VALIDATE_MEMORY_MB, init_ms)
        )
        invocations.append(
            replace(
                _billed("IngestFunction", ingest, DEFAULT_MEMORY_MB, init_ms),
                ephemeral_mb=INGEST_STORAGE_MB,
            )
        )
        wall = replace(
            wall, ingest_seconds=2 * platform.cold_start_seconds + VALIDATE_SECONDS + ingest
        )
    if shape.predict_shards:
        wall, billed = _predict_on_aws(shape, wall, init_ms, platform)
        invocations.extend(billed)
    return wall, invocations


def _predict_on_aws(
    shape: RunEstimate, wall: AwsWall, init_ms: float, platform: Platform
) -> tuple[AwsWall, list[cost.Billed]]:
    """A ``predict`` section's wall and invocations: its plan (reading the forest), one
    ScoreShard per shard (scoring as the merge scores, per row and tree; a wave of at most
    the builders' concurrency, each cold) and the finish (each part read)."""
    forest_mb = shape.groves * shape.grove_mb
    per_row_tree = shape.merge_seconds_per_tree / max(1, shape.test_rows)
    shard_rows = math.ceil(shape.predict_rows / shape.predict_shards)
    row_mb = shape.split_mb / max(1, shape.predict_rows - shape.test_rows)  # as training's
    rows_mb = shape.predict_rows * row_mb
    # the plan verifies the forest (each grove decoded, as the merge decodes them) and reads
    # the rows' columns; each shard reads the forest and its rows, and scores them
    plan = (
        4 * platform.s3_latency_seconds
        + (forest_mb + rows_mb) / platform.s3_mb_per_second
        + shape.n_trees * shape.merge_seconds_per_tree
    )
    shard = (
        5 * platform.s3_latency_seconds
        + (forest_mb + shard_rows * row_mb) / platform.s3_mb_per_second
        + shard_rows * shape.n_trees * per_row_tree * vcpu_factor(DEFAULT_MEMORY_MB)
    )
    finish = (shape.predict_shards + 1) * platform.s3_latency_seconds
    waves = math.ceil(shape.predict_shards / max(1, shape.concurrency))
    billed = [_billed("PlanPredictionsFunction", plan, DEFAULT_MEMORY_MB, init_ms)]
    billed += [
        _billed(
            "ScoreShardFunction",
            shard,
            DEFAULT_MEMORY_MB,
            init_ms if n < shape.concurrency else None,
        )
        for n in range(shape.predict_shards)
    ]
    billed.append(_billed("FinishPredictionsFunction", finish, VALIDATE_MEMORY_MB, init_ms))
    seconds = 3 * platform.cold_start_seconds + plan + waves * shard + finish
    return replace(wall, predict_seconds=seconds), billed


def _billed(function: str, seconds: float, memory_mb: int, init_ms: float | None) -> cost.Billed:
    duration_ms = seconds * 1000
    return cost.Billed(
        duration_ms=duration_ms,
        memory_mb=memory_mb,
        billed_duration_ms=math.ceil(duration_ms + (init_ms or 0.0)),
        init_ms=init_ms,
        function=function,
    )


def check_budget(request: TrainRequest, estimate: RunEstimate) -> None:
    """Refuse a run whose estimated cost is above the request's ``max_cost_usd``.

    Raises
    ------
    BudgetExceeded
        Naming the estimate, the cap and what to change.
    """
    cap = request.max_cost_usd
    if cap is None or estimate.cost_usd <= cap:
        return
    raise BudgetExceeded(
        f"the run is estimated to cost ${estimate.cost_usd:.6f} on AWS "
        f"({estimate.cost.gb_seconds:.1f} GB-s, {estimate.cost.lambda_requests} requests, "
        f"{estimate.cost.state_transitions} transitions; about {estimate.aws_seconds:.0f} s), "
        f"above max_cost_usd={cap:g}: raise max_cost_usd, or ask for fewer trees"
    )


def check_growth_budget(
    request: TrainRequest, estimate: RunEstimate | None, groves_to_build: int
) -> None:
    """Refuse growing a forest whose new groves would cost more than ``max_cost_usd``.

    The run's estimate is scaled by the share of its groves the growth builds (which
    undercounts the merge, whose work grows with the whole forest).

    Raises
    ------
    BudgetExceeded
        Naming the scaled estimate and the cap; or, for a run recorded without an estimate,
        saying there is nothing to check the cap against.
    """
    cap = request.max_cost_usd
    if cap is None:
        return
    if estimate is None:
        raise BudgetExceeded(
            f"max_cost_usd={cap:g}: this run's record has no estimate (it was planned by an "
            "earlier groveflow) to check the growth against; drop max_cost_usd or use a new run_id"
        )
    share = groves_to_build / max(1, estimate.groves)
    grown = estimate.cost_usd * share
    if grown > cap:
        raise BudgetExceeded(
            f"growing the forest by {groves_to_build} groves is estimated to cost "
            f"${grown:.6f} on AWS (the run's ${estimate.cost_usd:.6f} for {estimate.groves} "
            f"groves, scaled), above max_cost_usd={cap:g}: raise max_cost_usd, or grow by fewer "
            "trees"
        )


@dataclass(frozen=True)
class EstimateCheck:
    """A run's estimate set beside what it measured.

    Attributes
    ----------
    estimated_cost_usd : float
        The plan's AWS cost estimate.
    cost_usd : float or None
        The cost computed from the run's ``REPORT`` lines and transitions (on the local
        engine, its own durations at AWS prices).
    estimated_aws_seconds : float
        The plan's AWS wall-time estimate.
    estimated_local_seconds : float or None
        On the local engine, the local-wall estimate for its worker count.
    workers : int or None
        That worker count.
    seconds : float
        The measured wall time.
    """

    estimated_cost_usd: float
    cost_usd: float | None
    estimated_aws_seconds: float
    estimated_local_seconds: float | None
    workers: int | None
    seconds: float

    @property
    def wall_ratio(self) -> float | None:
        """Measured over estimated local wall time (1 is exact)."""
        if not self.estimated_local_seconds:
            return None
        return self.seconds / self.estimated_local_seconds

    @property
    def cost_ratio(self) -> float | None:
        """Actual over estimated cost (1 is exact)."""
        if self.cost_usd is None or not self.estimated_cost_usd:
            return None
        return self.cost_usd / self.estimated_cost_usd

    @classmethod
    def of(
        cls,
        estimate: RunEstimate,
        *,
        seconds: float,
        cost_usd: float | None,
        workers: int | None = None,
        cold_engine: bool = False,
    ) -> EstimateCheck:
        """The check of a run that ``estimate`` was made for (``workers``, ``cold_engine``:
        the local engine's, see :meth:`RunEstimate.local_wall`)."""
        local = None if workers is None else estimate.local_wall(workers, cold_engine=cold_engine)
        return cls(
            estimated_cost_usd=estimate.cost_usd,
            cost_usd=cost_usd,
            estimated_aws_seconds=estimate.aws_seconds,
            estimated_local_seconds=None if local is None else local.total_seconds,
            workers=workers,
            seconds=seconds,
        )


def choose_grove_size(
    shape: RunEstimate,
    *,
    max_concurrency: int,
    fits: Callable[[int], bool],
    max_grove_seconds: float | None = None,
) -> RunEstimate:
    """The run's estimate at the grove size the plan chooses when the request leaves
    ``grove_size`` out: of the sizes in :data:`GROVE_SIZE_LADDER` (and ``n_trees``) whose grove
    ``fits`` a builder, that make at most 10,000 groves and whose grove takes at most
    ``max_grove_seconds``, the cheapest whose estimated wall is within
    :data:`GROVE_WALL_MARGIN` of the fastest's, its builders running at once up to
    ``max_concurrency``. Fewer groves mean fewer cold starts, whose billed INIT is most of
    a small grove's cost; its ``grove_choice`` says what was chosen and why, with the INIT
    share reached against :data:`INIT_SHARE_TARGET`.

    Parameters
    ----------
    shape : RunEstimate
        The run's estimate at the request's default grove size (the trial's per-tree
        figures do not depend on it).
    max_concurrency : int
        The most builders at once (the request's, clamped to the stack's limit).
    fits : callable
        Whether a grove of that many trees fits a builder's memory (the size guard).
    max_grove_seconds : float or None, default=None
        The longest a grove may take on AWS (:attr:`RunEstimate.aws_grove_seconds`; the
        plan's grove-time guard). When no size is that quick, the smallest is kept, for the
        guard to refuse by name.
    """
    candidates = _grove_sizes(shape, max_concurrency, fits)
    if not candidates:
        return shape
    timely = [
        c
        for c in candidates
        if max_grove_seconds is None or c.aws_grove_seconds <= max_grove_seconds
    ]
    candidates = timely or candidates[:1]
    fastest = min(c.aws_seconds for c in candidates)
    within = [c for c in candidates if c.aws_seconds <= fastest * (1 + GROVE_WALL_MARGIN)]
    chosen = min(within, key=lambda c: (c.cost_usd, c.aws_seconds))
    return replace(chosen, grove_choice=_grove_choice(chosen, fastest))


def _grove_sizes(
    shape: RunEstimate, max_concurrency: int, fits: Callable[[int], bool]
) -> list[RunEstimate]:
    """The run priced at each grove size of :data:`GROVE_SIZE_LADDER` (and ``n_trees``) that
    fits a builder and makes at most :data:`MAX_GROVES` groves, smallest first."""
    n_trees = shape.n_trees
    sizes = sorted(
        size
        for size in {*GROVE_SIZE_LADDER, n_trees}
        if size <= n_trees and math.ceil(n_trees / size) <= MAX_GROVES and fits(size)
    )
    mb_per_tree = shape.grove_mb / shape.trees_per_grove
    candidates = []
    for size in sizes:
        groves = math.ceil(n_trees / size)
        candidates.append(
            priced(
                replace(
                    shape,
                    trees_per_grove=size,
                    groves=groves,
                    concurrency=fan_out_concurrency(max_concurrency, items=groves),
                    grove_mb=mb_per_tree * size,
                )
            )
        )
    return candidates


def _grove_choice(chosen: RunEstimate, fastest: float) -> str:
    """What the plan chose for a grove size left out, and why (the estimate's ``grove_choice``)."""
    share = chosen.cost.charges.get("init", 0.0) / chosen.cost_usd
    why = (
        f"grove_size {chosen.trees_per_grove} (left out, so chosen): "
        f"{_count(chosen.groves, 'grove')}, {_count(chosen.concurrency, 'builder')} at once; "
        f"billed INIT is {share:.0%} of the estimated "
        f"${chosen.cost_usd:.6f} (aimed under {INIT_SHARE_TARGET:.0%}) at a wall of "
        f"{chosen.aws_seconds:.1f} s, within {GROVE_WALL_MARGIN:.0%} of the fastest grove "
        f"size's {fastest:.1f} s"
    )
    if share > INIT_SHARE_TARGET and chosen.groves > 1:
        why += "; fewer, larger groves would lengthen the wall beyond that margin"
    return why


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"

"""What a run costs on AWS: every charge it incurs, each priced by a named, dated price.

The charges: Lambda duration (x86_64 or arm64, a cold start's INIT included) and requests,
Lambda ephemeral storage configured above 512 MB, Step Functions transitions, S3 requests, and
CloudWatch Logs ingestion. The estimate uses list prices and ignores the free tiers (they are
monthly and account-wide, so a single run cannot know how much of them is left); S3 storage
(the run's objects, a few cents a GB-month) and data transfer inside the region (free) are
not a run's charges.

Prices
------
Every price lives in :data:`PRICES`, each with the date it was recorded and where it is listed
(us-east-1):

- Lambda duration: $0.0000166667 per GB-second on x86_64, $0.0000133334 on arm64 (the first
  tier, 6 billion GB-seconds a month); $0.20 per million requests; duration is billed rounded
  up to the nearest 1 ms with no minimum, and a GB is 1,024 MB
  (https://aws.amazon.com/lambda/pricing/ and the 1 ms billing announcement,
  https://aws.amazon.com/blogs/aws/new-for-aws-lambda-1ms-billing-granularity-adds-cost-savings/).
  Since August 2025 the INIT phase of managed runtimes is billed too: the ``Billed Duration``
  of a cold start's ``REPORT`` line covers its ``Init Duration`` and its ``Duration``. Cost is
  read from ``Billed Duration``, never from ``Duration``.
- Lambda ephemeral storage: $0.0000000309 per GB-second of ``/tmp`` configured above the
  512 MB every function has, for the invocation's billed duration (same page).
- Step Functions Standard Workflows: $0.025 per 1,000 state transitions; "Step
  Functions counts a state transition each time a step of your workflow is executed ... across all
  your state machines, including retries" (https://aws.amazon.com/step-functions/pricing/).
- S3 Standard requests: $0.005 per 1,000 PUT, COPY, POST and LIST requests, $0.0004 per 1,000
  GET (and HEAD) requests (https://aws.amazon.com/s3/pricing/).
- CloudWatch Logs: $0.50 per GB ingested (Standard log class); each event is counted with 26
  bytes of metadata (https://aws.amazon.com/cloudwatch/pricing/).

How state transitions are counted
---------------------------------
- Parent execution: one transition per state entered (each ``*StateEntered`` history event),
  plus one per retry of a Task (each scheduling of a Task beyond its first inside the same state
  entry), as the pricing page says retries are charged as additional transitions.
- Distributed Map: "When you use the Map state in Distributed mode, you're charged one state
  transition for each child workflow execution that the Distributed Map state starts"
  (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-transitions.html, section
  "Transitions in Distributed Map states"). The children are Standard executions
  (``ExecutionType: STANDARD``), so the states each child enters and their retries are charged
  too. The Map Run itself is charged only as the parent's ``MapStateEntered`` transition: the
  documentation lists no other charge for it.

A child's own events live in the child's history, not the parent's (on AWS and on the local
engine alike), so :func:`count_state_transitions` takes the children's transitions as an explicit
number, which :func:`child_transitions` estimates from the number of children and Lambda attempts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = [
    "ARCHITECTURES",
    "LAMBDA_FREE_EPHEMERAL_MB",
    "LAMBDA_USD_PER_GB_SECOND",
    "LAMBDA_USD_PER_REQUEST",
    "LOG_EVENT_OVERHEAD_BYTES",
    "PRICES",
    "PRICES_AS_OF",
    "PRICE_REGION",
    "STACK_ARCHITECTURE",
    "STAGE_OF_FUNCTION",
    "STEP_FUNCTIONS_USD_PER_TRANSITION",
    "Billed",
    "CostEstimate",
    "FunctionUse",
    "InvocationLike",
    "Price",
    "billed_ms",
    "child_transitions",
    "count_state_transitions",
    "estimate_cost",
    "function_of_log_group",
    "function_use",
    "invocations_from_logs",
    "lambda_usd_per_gb_second",
    "logs_of_functions",
    "parse_report_line",
    "report_line",
]


# ---------------------------------------------------------------- prices (the one place)
@dataclass(frozen=True)
class Price:
    """One list price: ``usd`` per ``unit``, as recorded on ``as_of`` from ``source``."""

    usd: float
    unit: str
    as_of: str
    source: str


PRICE_REGION = "us-east-1"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
PRICES = {
    "lambda_x86_64": Price(0.0000166667, "GB-second of x86_64 duration", "2026-11-24", _LAMBDA),
    "lambda_arm64": Price(0.0000133334, "GB-second of arm64 duration", "2026-12-07", _LAMBDA),
    "lambda_request": Price(0.20 / 1_000_000, "Lambda request", "2026-11-24", _LAMBDA),
    "lambda_ephemeral_storage": Price(
        0.0000000309, "GB-second of /tmp configured above 512 MB", "2026-12-07", _LAMBDA
    ),
    "step_functions_transition": Price(
        0.025 / 1_000,
        "Standard state transition",
        "2026-11-24",
        "https://aws.amazon.com/step-functions/pricing/",
    ),
    "s3_write_request": Price(
        0.005 / 1_000,
        "S3 PUT, COPY, POST or LIST request",
        "2026-12-07",
        "https://aws.amazon.com/s3/pricing/",
    ),
    "s3_read_request": Price(
        0.0004 / 1_000, "S3 GET or HEAD request", "2026-12-07", "https://aws.amazon.com/s3/pricing/"
    ),
    "logs_ingestion": Price(
        0.50,
        "GB of CloudWatch Logs ingested (Standard class)",
        "2026-12-07",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
}
"""Every price a run's cost uses, by name (us-east-1)."""
PRICES_AS_OF = max(price.as_of for price in PRICES.values())
"""The latest date a price was recorded."""
LAMBDA_USD_PER_GB_SECOND = PRICES["lambda_x86_64"].usd
LAMBDA_USD_PER_REQUEST = PRICES["lambda_request"].usd
STEP_FUNCTIONS_USD_PER_TRANSITION = PRICES["step_functions_transition"].usd
LAMBDA_FREE_EPHEMERAL_MB = 512
"""The ``/tmp`` every function has without charge (in MB)."""
LOG_EVENT_OVERHEAD_BYTES = 26
"""What CloudWatch Logs counts per event besides its message."""
ARCHITECTURES = ("arm64", "x86_64")
STACK_ARCHITECTURE = "arm64"
"""template.yaml's default ``Architecture``: a stack deployed without overrides, and the
local engine's runs, are priced at it."""


def lambda_usd_per_gb_second(architecture: str) -> float:
    """Lambda's duration price for ``architecture`` (``arm64`` or ``x86_64``)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r} is not one of {list(ARCHITECTURES)}")
    return PRICES[f"lambda_{architecture}"].usd


STAGE_OF_FUNCTION = {
    "ValidateRequestFunction": "ingest",
    "IngestFunction": "ingest",
    "PlanFunction": "plan",
    "SearchPlanFunction": "plan",
    "BuildGroveFunction": "fitting",
    "MergeFunction": "merge",
    "ScoreRoundFunction": "merge",
    "PlanPredictionsFunction": "predict",
    "ScoreShardFunction": "predict",
    "FinishPredictionsFunction": "predict",
}
"""The cost breakdown's stage of each function's duration (its INIT is counted as ``init``)."""

MB_PER_GB = 1024
_TASK_SCHEDULED = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})


class InvocationLike(Protocol):
    """One Lambda invocation: how long it ran and how much memory it was configured with.

    An invocation may also have ``init_ms`` (a cold start's INIT, in milliseconds, or None)
    and ``billed_duration_ms`` (what its ``REPORT`` line bills); see :func:`billed_ms`. And
    ``function`` (the template's logical id), ``max_memory_mb`` (its peak, ``Max Memory
    Used``) and ``error_type``, which :func:`function_use` sums up per function.
    """

    @property
    def duration_ms(self) -> float:
        """Measured duration (in milliseconds), INIT excluded."""
        ...

    @property
    def memory_mb(self) -> int:
        """Configured memory (in MB), which is what Lambda bills, not the memory used."""
        ...


@dataclass(frozen=True)
class CostEstimate:
    """The AWS cost of one run at list prices, without free tiers.

    Attributes
    ----------
    gb_seconds : float
        Billed Lambda duration: configured memory (in GB) times duration rounded up to 1 ms
        (in seconds), summed over invocations.
    lambda_requests : int
        Lambda invocations, each billed as one request.
    state_transitions : int
        Step Functions Standard state transitions, parent and children.
    lambda_compute_usd, lambda_request_usd, step_functions_usd, total_usd : float
        Each charge and their sum, in US dollars.
    prices_as_of : str
        The date (ISO 8601) the latest price was recorded (each price's own: :data:`PRICES`).
    region : str, default="us-east-1"
        The region the prices are for.
    by_function : dict of str to dict, default={}
        Each function's share (see :class:`FunctionUse`, as a dictionary): its invocations,
        GB-seconds, configured memory and the peak memory it used, by logical id.
    architecture : str, default="x86_64"
        The functions' architecture, which prices their duration.
    init_gb_seconds : float, default=0.0
        The part of ``gb_seconds`` that is cold starts' INIT.
    s3_read_requests, s3_write_requests : int, default=0
        S3 GET/HEAD requests, and PUT/COPY/POST/LIST requests.
    log_bytes : int, default=0
        CloudWatch Logs ingested (messages plus each event's 26 bytes), in bytes.
    ephemeral_storage_usd, s3_usd, logs_usd : float, default=0.0
        Those charges, in US dollars (included in ``total_usd``).
    charges : dict of str to float, default={}
        ``total_usd`` by category, in US dollars: ``init`` (every function's billed INIT),
        the duration of ``ingest`` (ValidateRequest, Ingest), ``plan``, ``fitting`` (the
        grove builders), ``merge`` and ``predict``, then ``lambda_requests``,
        ``ephemeral_storage``, ``transitions``, ``s3_requests`` and ``logs``.
    """

    gb_seconds: float
    lambda_requests: int
    state_transitions: int
    lambda_compute_usd: float
    lambda_request_usd: float
    step_functions_usd: float
    total_usd: float
    prices_as_of: str
    region: str = PRICE_REGION
    by_function: dict[str, dict[str, Any]] = field(default_factory=dict)
    architecture: str = "x86_64"
    init_gb_seconds: float = 0.0
    s3_read_requests: int = 0
    s3_write_requests: int = 0
    log_bytes: int = 0
    ephemeral_storage_usd: float = 0.0
    s3_usd: float = 0.0
    logs_usd: float = 0.0
    charges: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as a JSON-ready dictionary."""
        return asdict(self)


def billed_gb_seconds(duration_ms: float, memory_mb: int) -> float:
    """GB-seconds Lambda bills for one invocation (duration rounded up to the next 1 ms).

    Parameters
    ----------
    duration_ms : float
        Measured duration (in milliseconds), >= 0.
    memory_mb : int
        Configured memory (in MB), > 0.
    """
    if not duration_ms >= 0 or not math.isfinite(duration_ms):
        raise ValueError(f"duration_ms={duration_ms!r} must be a finite number >= 0")
    if memory_mb <= 0:
        raise ValueError(f"memory_mb={memory_mb!r} must be > 0")
    return (memory_mb / MB_PER_GB) * (math.ceil(duration_ms) / 1000)


def billed_ms(invocation: InvocationLike) -> int:
    """The milliseconds Lambda bills for one invocation.

    Its ``Billed Duration`` when it has one (read from a ``REPORT`` line); otherwise its
    duration plus its INIT (``init_ms``, for a cold start), rounded up to the next 1 ms.
    """
    stated = getattr(invocation, "billed_duration_ms", None)
    if stated is not None:
        return int(stated)
    init_ms = getattr(invocation, "init_ms", None) or 0.0
    total = invocation.duration_ms + init_ms
    if not total >= 0 or not math.isfinite(total):
        raise ValueError(f"duration_ms={invocation.duration_ms!r} must be a finite number >= 0")
    return math.ceil(total)


def estimate_cost(
    invocations: Sequence[InvocationLike],
    state_transitions: int,
    *,
    architecture: str = "x86_64",
    s3_read_requests: int = 0,
    s3_write_requests: int = 0,
    log_bytes: int = 0,
    ephemeral_mb: Mapping[str, int] | None = None,
) -> CostEstimate:
    """Price a run from its Lambda invocations, its Step Functions state transitions, its S3
    requests and the logs it wrote.

    Parameters
    ----------
    invocations : sequence of InvocationLike
        Every Lambda invocation of the run, failed ones and retries included (Lambda bills
        them), each billed :func:`billed_ms` (cold starts' INIT included); one with an
        ``ephemeral_mb`` above 512 is charged for the storage above it too.
    state_transitions : int
        Standard state transitions, e.g. from :func:`count_state_transitions`.
    architecture : {"x86_64", "arm64"}, default="x86_64"
        The functions' architecture, which prices their duration.
    s3_read_requests, s3_write_requests : int, default=0
        S3 GET/HEAD requests, and PUT/COPY/POST/LIST requests, of every function.
    log_bytes : int, default=0
        CloudWatch Logs ingested, in bytes (each event's message plus 26 bytes).
    ephemeral_mb : mapping of str to int or None, default=None
        Each function's configured ``/tmp`` (in MB), by logical id, for invocations that do
        not carry their own ``ephemeral_mb``.

    Returns
    -------
    CostEstimate
    """
    counts = {
        "state_transitions": state_transitions,
        "s3_read_requests": s3_read_requests,
        "s3_write_requests": s3_write_requests,
        "log_bytes": log_bytes,
    }
    for name, count in counts.items():
        if count < 0:
            raise ValueError(f"{name}={count} must be >= 0")
    usd_per_gb_second = lambda_usd_per_gb_second(architecture)
    by_stage: dict[str, float] = {"init": 0.0}
    ephemeral_gb_seconds = 0.0
    for invocation in invocations:
        billed = billed_ms(invocation)
        init = min(billed, math.ceil(getattr(invocation, "init_ms", None) or 0.0))
        gb = invocation.memory_mb / MB_PER_GB
        by_stage["init"] += gb * init / 1000
        stage = STAGE_OF_FUNCTION.get(getattr(invocation, "function", None) or "", "other")
        by_stage[stage] = by_stage.get(stage, 0.0) + gb * (billed - init) / 1000
        storage = getattr(invocation, "ephemeral_mb", None) or (ephemeral_mb or {}).get(
            getattr(invocation, "function", None) or "", 0
        )
        above = max(0, storage - LAMBDA_FREE_EPHEMERAL_MB)
        ephemeral_gb_seconds += above / MB_PER_GB * billed / 1000
    gb_seconds = math.fsum(billed_gb_seconds(billed_ms(i), i.memory_mb) for i in invocations)
    compute = gb_seconds * usd_per_gb_second
    requests = len(invocations) * LAMBDA_USD_PER_REQUEST
    transitions = state_transitions * STEP_FUNCTIONS_USD_PER_TRANSITION
    ephemeral = ephemeral_gb_seconds * PRICES["lambda_ephemeral_storage"].usd
    s3 = (
        s3_read_requests * PRICES["s3_read_request"].usd
        + s3_write_requests * PRICES["s3_write_request"].usd
    )
    logs = log_bytes / 2**30 * PRICES["logs_ingestion"].usd
    charges = {stage: gb * usd_per_gb_second for stage, gb in by_stage.items()}
    charges.update(
        lambda_requests=requests,
        ephemeral_storage=ephemeral,
        transitions=transitions,
        s3_requests=s3,
        logs=logs,
    )
    return CostEstimate(
        gb_seconds=gb_seconds,
        lambda_requests=len(invocations),
        state_transitions=state_transitions,
        lambda_compute_usd=compute,
        lambda_request_usd=requests,
        step_functions_usd=transitions,
        total_usd=compute + requests + transitions + ephemeral + s3 + logs,
        prices_as_of=PRICES_AS_OF,
        by_function={name: use.to_dict() for name, use in function_use(invocations).items()},
        architecture=architecture,
        init_gb_seconds=by_stage["init"],
        s3_read_requests=s3_read_requests,
        s3_write_requests=s3_write_requests,
        log_bytes=log_bytes,
        ephemeral_storage_usd=ephemeral,
        s3_usd=s3,
        logs_usd=logs,
        charges=charges,
    )


OUT_OF_MEMORY = "Runtime.OutOfMemory"


@dataclass(frozen=True)
class FunctionUse:
    """What one function's invocations in a run used: memory against its configuration.

    Attributes
    ----------
    invocations : int
        Invocations (retries and failures included).
    memory_mb : int
        Configured memory (``MemorySize``, in MB); the largest if it changed.
    max_memory_used_mb : int or None
        The highest ``Max Memory Used`` (in MB) of those invocations; None if none
        reported one.
    out_of_memory : int
        Invocations that failed with ``Runtime.OutOfMemory``.
    gb_seconds : float
        Billed GB-seconds of those invocations.
    """

    invocations: int
    memory_mb: int
    max_memory_used_mb: int | None
    out_of_memory: int
    gb_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dictionary."""
        return asdict(self)


def function_use(invocations: Iterable[InvocationLike]) -> dict[str, FunctionUse]:
    """Each function's :class:`FunctionUse`, by its ``function`` (``"unknown"`` if it has none)."""
    groups: dict[str, list[InvocationLike]] = {}
    for invocation in invocations:
        groups.setdefault(getattr(invocation, "function", None) or "unknown", []).append(invocation)
    uses = {}
    for name, group in groups.items():
        peaks = [p for p in (getattr(i, "max_memory_mb", None) for i in group) if p is not None]
        uses[name] = FunctionUse(
            invocations=len(group),
            memory_mb=max(i.memory_mb for i in group),
            max_memory_used_mb=max(peaks) if peaks else None,
            out_of_memory=sum(getattr(i, "error_type", None) == OUT_OF_MEMORY for i in group),
            gb_seconds=math.fsum(billed_gb_seconds(billed_ms(i), i.memory_mb) for i in group),
        )
    return uses


def count_state_transitions(
    history_events: Iterable[dict[str, Any]], child_transitions: int = 0
) -> int:
    """Billed state transitions of an execution: its own, from its history, plus its children's.

    Parameters
    ----------
    history_events : iterable of dict
        The execution's history events (``GetExecutionHistory``), oldest first.
    child_transitions : int, default=0
        Transitions of Distributed Map child executions, which are not in the parent's history;
        see :func:`child_transitions`.

    Returns
    -------
    int
        One per state entered, one per Task retry, plus ``child_transitions``.
    """
    if child_transitions < 0:
        raise ValueError(f"child_transitions={child_transitions} must be >= 0")
    entered = retries = 0
    attempts = 0
    for event in history_events:
        kind = event.get("type", "")
        if kind.endswith("StateEntered"):
            retries += max(attempts - 1, 0)
            entered += 1
            attempts = 0
        elif kind in _TASK_SCHEDULED:
            attempts += 1
    retries += max(attempts - 1, 0)
    return entered + retries + child_transitions


def child_transitions(n_children: int, task_attempts: int) -> int:
    """Transitions of Distributed Map children whose item processor is one Task state.

    Each child is charged one transition for being started and one for entering its Task;
    each retry of the Task is one more. With ``task_attempts`` Lambda attempts in all (first
    tries and retries), that is ``n_children + task_attempts``.

    Parameters
    ----------
    n_children : int
        Child executions the Map Run started (groves, for a training run).
    task_attempts : int
        Invocations of the child Task's Lambda, retries included; at least one per child.
    """
    if n_children < 0 or task_attempts < n_children:
        raise ValueError(
            f"need 0 <= n_children <= task_attempts, got n_children={n_children}, "
            f"task_attempts={task_attempts}"
        )
    return n_children + task_attempts


# --------------------------------------------------------------------------- from Lambda's logs

_REPORT = re.compile(
    r"REPORT RequestId: \S+\s+Duration: ([\d.]+) ms\s+Billed Duration: (\d+) ms\s+"
    r"Memory Size: (\d+) MB"
)
_INIT = re.compile(r"Init Duration: ([\d.]+) ms")
_MAX_MEMORY = re.compile(r"Max Memory Used: (\d+) MB")
_ERROR_TYPE = re.compile(r"Error Type: (\S+)")
_STATUS = {"Sandbox.Timedout": "timeout"}  # any other runtime-level failure: "error"


@dataclass(frozen=True)
class Billed:
    """One invocation as Lambda's ``REPORT`` log line states it.

    Attributes
    ----------
    duration_ms : float
        ``Duration`` (in milliseconds): the handler's run, INIT excluded.
    memory_mb : int
        ``Memory Size`` (in MB), configured.
    billed_duration_ms : int
        ``Billed Duration`` (in milliseconds): what is charged, a cold start's INIT included.
    init_ms : float or None, default=None
        ``Init Duration`` (in milliseconds) of a cold start; None for a warm invocation.
    max_memory_mb : int or None, default=None
        ``Max Memory Used`` (in MB): the invocation's peak; None if the line has none.
    error_type : str or None, default=None
        ``Error Type`` of an invocation the runtime failed (``Runtime.OutOfMemory``...);
        None for one that returned (a handler's exception included, as Lambda writes it).
    function : str or None, default=None
        The function's logical id, from the log group the line was read from
        (see :func:`function_of_log_group`).
    ephemeral_mb : int or None, default=None
        The function's ``EphemeralStorage`` (in MB); None for the free 512 MB.
    """

    duration_ms: float
    memory_mb: int
    billed_duration_ms: int
    init_ms: float | None = None
    max_memory_mb: int | None = None
    error_type: str | None = None
    function: str | None = None
    ephemeral_mb: int | None = None


def report_line(
    duration_ms: float,
    memory_mb: int,
    request_id: str,
    *,
    init_ms: float | None = None,
    billed_duration_ms: int | None = None,
    max_memory_mb: int | None = None,
    error_type: str | None = None,
) -> str:
    """The ``REPORT`` line Lambda writes at the end of every invocation.

    Parameters
    ----------
    duration_ms : float
        The handler's run (in milliseconds), INIT excluded.
    memory_mb : int
    request_id : str
    init_ms : float or None, default=None
        A cold start's INIT (in milliseconds): the line then has ``Init Duration``.
    billed_duration_ms : int or None, default=None
        What is billed; by default ``duration_ms + init_ms`` rounded up to the next 1 ms,
        as Lambda bills managed runtimes since August 2025.
    max_memory_mb : int or None, default=None
        The invocation's peak memory (in MB), written as ``Max Memory Used``; None (not
        measured) leaves the field out rather than state a figure nobody measured.
    error_type : str or None, default=None
        A runtime-level failure: ``Runtime.OutOfMemory`` or ``Runtime.ExitError`` end the
        line with ``Status: error`` and ``Error Type: ...``, ``Sandbox.Timedout`` with
        ``Status: timeout``, as Lambda writes them (e.g. nasa-gcn/gcn.nasa.gov pull 3628
        quotes ``Error Type: Runtime.OutOfMemory`` from a REPORT line). A handler's own
        exception is not one: its line is a normal one.
    """
    billed = billed_duration_ms
    if billed is None:
        billed = math.ceil(duration_ms + (init_ms or 0.0))
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed} ms",
        f"Memory Size: {memory_mb} MB",
    ]
    if max_memory_mb is not None:
        fields.append(f"Max Memory Used: {max_memory_mb} MB")
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    if error_type is not None and error_type.startswith(("Runtime.", "Sandbox.")):
        fields.append(f"Status: {_STATUS.get(error_type, 'error')}")
        if error_type in _STATUS:
            return "\t".join(fields)
        fields.append(f"Error Type: {error_type}")
    return "\t".join(fields)


def parse_report_line(message: str, function: str | None = None) -> Billed | None:
    """What a ``REPORT`` line states (durations, memory, a runtime error); None for any
    other log line. A line without ``Max Memory Used`` (the local engine's before it
    measured memory) parses, its peak None. ``function`` names the function it is of."""
    match = _REPORT.search(message)
    if match is None:
        return None
    init = _INIT.search(message)
    peak = _MAX_MEMORY.search(message)
    error = _ERROR_TYPE.search(message)
    if error is None and "Status: timeout" in message:
        error_type: str | None = "Sandbox.Timedout"
    else:
        error_type = error.group(1) if error else None
    return Billed(
        duration_ms=float(match.group(1)),
        memory_mb=int(match.group(3)),
        billed_duration_ms=int(match.group(2)),
        init_ms=float(init.group(1)) if init else None,
        max_memory_mb=int(peak.group(1)) if peak else None,
        error_type=error_type,
        function=function,
    )


_LOGICAL_ID = re.compile(r"([A-Za-z0-9]*Function)(?:LogGroup)?")


def function_of_log_group(group: str) -> str:
    """The template's logical id of the function logging to ``group``, else ``group``.

    CloudFormation names a stack's resources ``<stack>-<LogicalId>-<suffix>``: a
    function's own group (``LoggingConfig``) is ``<stack>-PlanFunctionLogGroup-AbC1``,
    Lambda's default ``/aws/lambda/<stack>-PlanFunction-AbC1``, the local engine's
    ``/aws/lambda/<stack>-PlanFunction``; each gives ``PlanFunction``.
    """
    for part in reversed(group.rsplit("/", 1)[-1].split("-")):
        found = _LOGICAL_ID.fullmatch(part)
        if found:
            return found.group(1)
    return group


def invocations_from_logs(
    logs: Any, log_groups: Iterable[str], start_ms: int, end_ms: int
) -> list[Billed]:
    """Every invocation Lambda reported in ``log_groups`` between two times (ms since epoch).

    A run's functions log to the stack's log groups; other runs of the same stack in the
    same window would be counted too, so the figure is for one run at a time. Each
    record names its function (:func:`function_of_log_group`).
    """
    return _read_logs(logs, log_groups, start_ms, end_ms, '"REPORT RequestId"')[0]


def logs_of_functions(
    logs: Any, log_groups: Iterable[str], start_ms: int, end_ms: int
) -> tuple[list[Billed], int]:
    """Every invocation Lambda reported in ``log_groups`` between two times (ms since
    epoch), as :func:`invocations_from_logs` reads them, and the bytes CloudWatch Logs
    ingested there: every event's message and :data:`LOG_EVENT_OVERHEAD_BYTES`."""
    return _read_logs(logs, log_groups, start_ms, end_ms, None)


def _read_logs(
    logs: Any, log_groups: Iterable[str], start_ms: int, end_ms: int, pattern: str | None
) -> tuple[list[Billed], int]:
    billed: list[Billed] = []
    ingested = 0
    for group in log_groups:
        function = function_of_log_group(group)
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "endTime": end_ms}
        if pattern is not None:
            kwargs["filterPattern"] = pattern
        while True:
            try:
                page = logs.filter_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                break
            for event in page.get("events", []):
                message = event["message"]
                ingested += len(message.encode()) + LOG_EVENT_OVERHEAD_BYTES
                record = parse_report_line(message, function)
                if record is not None:
                    billed.append(record)
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    return billed, ingested

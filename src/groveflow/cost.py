"""What a training run costs on AWS: Lambda compute and requests plus Step Functions transitions.

The estimate uses list prices, ignores the free tiers (they are monthly and account-wide, so a
single run cannot know how much of them is left) and leaves out S3 requests and storage, which are
small next to compute for every run groveflow is meant for.

Prices
------
Every price lives in the constants below, with the date they were checked and where:

- Lambda, us-east-1, x86: $0.0000166667 per GB-second of duration and $0.20 per million
  requests; duration is billed rounded up to the nearest 1 ms with no minimum, and a GB is
  1,024 MB (https://aws.amazon.com/lambda/pricing/ and the 1 ms billing announcement,
  https://aws.amazon.com/blogs/aws/new-for-aws-lambda-1ms-billing-granularity-adds-cost-savings/).
  Since August 2025 the INIT phase of managed runtimes is billed too: the ``Billed Duration``
  of a cold start's ``REPORT`` line covers its ``Init Duration`` and its ``Duration``. Cost is
  read from ``Billed Duration``, never from ``Duration``.
- Step Functions Standard Workflows, us-east-1: $0.025 per 1,000 state transitions; "Step
  Functions counts a state transition each time a step of your workflow is executed ... across all
  your state machines, including retries" (https://aws.amazon.com/step-functions/pricing/).

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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = [
    "LAMBDA_USD_PER_GB_SECOND",
    "LAMBDA_USD_PER_REQUEST",
    "PRICES_AS_OF",
    "PRICE_REGION",
    "STEP_FUNCTIONS_USD_PER_TRANSITION",
    "Billed",
    "CostEstimate",
    "InvocationLike",
    "billed_ms",
    "child_transitions",
    "count_state_transitions",
    "estimate_cost",
    "invocations_from_logs",
    "parse_report_line",
    "report_line",
]

# ---------------------------------------------------------------- prices (the one place)
PRICES_AS_OF = "2026-11-24"
PRICE_REGION = "us-east-1"
LAMBDA_USD_PER_GB_SECOND = 0.0000166667  # x86 duration
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000
STEP_FUNCTIONS_USD_PER_TRANSITION = 0.025 / 1_000  # Standard Workflows

MB_PER_GB = 1024
_TASK_SCHEDULED = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})


class InvocationLike(Protocol):
    """One Lambda invocation: how long it ran and how much memory it was configured with.

    An invocation may also have ``init_ms`` (a cold start's INIT, in milliseconds, or None)
    and ``billed_duration_ms`` (what its ``REPORT`` line bills); see :func:`billed_ms`.
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
        The date (ISO 8601) the prices were checked.
    region : str, default="us-east-1"
        The region the prices are for.
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


def estimate_cost(invocations: Sequence[InvocationLike], state_transitions: int) -> CostEstimate:
    """Price a run from its Lambda invocations and its Step Functions state transitions.

    Parameters
    ----------
    invocations : sequence of InvocationLike
        Every Lambda invocation of the run, failed ones and retries included (Lambda bills
        them), each billed :func:`billed_ms` (cold starts' INIT included).
    state_transitions : int
        Standard state transitions, e.g. from :func:`count_state_transitions`.

    Returns
    -------
    CostEstimate
    """
    if state_transitions < 0:
        raise ValueError(f"state_transitions={state_transitions} must be >= 0")
    gb_seconds = math.fsum(billed_gb_seconds(billed_ms(i), i.memory_mb) for i in invocations)
    compute = gb_seconds * LAMBDA_USD_PER_GB_SECOND
    requests = len(invocations) * LAMBDA_USD_PER_REQUEST
    transitions = state_transitions * STEP_FUNCTIONS_USD_PER_TRANSITION
    return CostEstimate(
        gb_seconds=gb_seconds,
        lambda_requests=len(invocations),
        state_transitions=state_transitions,
        lambda_compute_usd=compute,
        lambda_request_usd=requests,
        step_functions_usd=transitions,
        total_usd=compute + requests + transitions,
        prices_as_of=PRICES_AS_OF,
    )


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
    """

    duration_ms: float
    memory_mb: int
    billed_duration_ms: int
    init_ms: float | None = None


def report_line(
    duration_ms: float,
    memory_mb: int,
    request_id: str,
    *,
    init_ms: float | None = None,
    billed_duration_ms: int | None = None,
) -> str:
    """The ``REPORT`` line Lambda writes at the end of every invocation.

    Parameters
    ----------
    duration_ms : float
        The handler's run (in milliseconds), INIT excluded.
    memory_mb : int
    request_id : str
    init_ms : float or None, default=None
        A cold start's INIT (in milliseconds): the line then ends with ``Init Duration``.
    billed_duration_ms : int or None, default=None
        What is billed; by default ``duration_ms + init_ms`` rounded up to the next 1 ms,
        as Lambda bills managed runtimes since August 2025.
    """
    billed = billed_duration_ms
    if billed is None:
        billed = math.ceil(duration_ms + (init_ms or 0.0))
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed} ms\tMemory Size: {memory_mb} MB\t"
        "Max Memory Used: 0 MB"
    )
    return line if init_ms is None else f"{line}\tInit Duration: {init_ms:.2f} ms"


def parse_report_line(message: str) -> Billed | None:
    """What a ``REPORT`` line bills (durations and memory); None for any other log line."""
    match = _REPORT.search(message)
    if match is None:
        return None
    init = _INIT.search(message)
    return Billed(
        duration_ms=float(match.group(1)),
        memory_mb=int(match.group(3)),
        billed_duration_ms=int(match.group(2)),
        init_ms=float(init.group(1)) if init else None,
    )


def invocations_from_logs(
    logs: Any, log_groups: Iterable[str], start_ms: int, end_ms: int
) -> list[Billed]:
    """Every invocation Lambda reported in ``log_groups`` between two times (ms since epoch).

    A run's functions log to the stack's log groups; other runs of the same stack in the
    same window would be counted too, so the figure is for one run at a time.
    """
    billed: list[Billed] = []
    for group in log_groups:
        kwargs: dict[str, Any] = {
            "logGroupName": group,
            "startTime": start_ms,
            "endTime": end_ms,
            "filterPattern": '"REPORT RequestId"',
        }
        while True:
            try:
                page = logs.filter_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                break
            billed.extend(
                record
                for record in (parse_report_line(e["message"]) for e in page.get("events", []))
                if record is not None
            )
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    return billed

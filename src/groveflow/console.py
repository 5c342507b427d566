"""What the ``groveflow`` command prints: progress, run summaries, one-line errors.

Formatting only: every value comes from a :class:`groveflow.RunResult`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from groveflow.api import RunResult, SearchResult, StageMemory
from groveflow.catalog import Entry
from groveflow.estimates import RunEstimate
from groveflow.follow import Progress
from groveflow.jsonsafe import json_safe

__all__ = [
    "ProgressBar",
    "confirm",
    "emit",
    "emit_entries",
    "emit_estimate",
    "estimate_figures",
    "interrupted",
    "read_json",
    "state_dir",
    "stopped_following",
    "summary",
]

PLAIN_PROGRESS_SECONDS = 15.0
"""Without a terminal, a plain progress line at most this often while a stage goes on."""


class ProgressBar:
    """The Map Run's items done, failed and running, and elapsed time, on stderr.

    On a terminal one line redrawn in place. Otherwise (a log file, a pipe, CI) a plain
    line when a stage's items have all ended, at most every :data:`PLAIN_PROGRESS_SECONDS`
    while a stage goes on and its counts change, and at :meth:`finish` the last counts
    seen, so the output ends with the final counts. A closed stderr turns it off.
    """

    def __init__(self, enabled: bool, terminal: bool | None = None) -> None:
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._drawn = False
        self._last: Progress | None = None
        self._written: tuple[str | None, int, int, int, int] | None = None
        self._written_at = time.monotonic()

    def __call__(self, progress: Progress) -> None:
        if not self.enabled or not progress.total:
            return
        if self.terminal:
            width = 30
            filled = int(width * progress.succeeded / progress.total)
            bar = f"[{'#' * filled}{'.' * (width - filled)}]"
            self._write(f"\r{_label(progress)} {bar} {_counts(progress)}")
            self._drawn = True
            return
        last, self._last = self._last, progress
        if last is not None and last.map_label != progress.map_label:
            self._plain(last)  # the stage before ended: its last counts
        ended = progress.running == 0 and progress.succeeded + progress.failed >= progress.total
        due = time.monotonic() - self._written_at >= PLAIN_PROGRESS_SECONDS
        if ended or due:
            self._plain(progress)

    def finish(self) -> None:
        """End the redrawn line; without a terminal, write the last counts if not yet written."""
        if self._drawn:
            self._write("\n")
            self._drawn = False
        elif self.enabled and not self.terminal and self._last is not None:
            self._plain(self._last)

    def _plain(self, progress: Progress) -> None:
        """One plain line, unless the counts are those of the line before."""
        key = (
            progress.map_label,
            progress.succeeded,
            progress.failed,
            progress.running,
            progress.total,
        )
        if key != self._written:
            self._written, self._written_at = key, time.monotonic()
            self._write(f"{_label(progress)}: {_counts(progress)}\n")

    def _write(self, text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except OSError:  # stderr closed (`2>&1 | head`): the run goes on without progress
            self.enabled = False


def _label(progress: Progress) -> str:
    return progress.map_label or "items"


def _counts(progress: Progress) -> str:
    """``10/10 done, 0 failed, 0 running  2.9s``."""
    return (
        f"{progress.succeeded}/{progress.total} done, {progress.failed} failed, "
        f"{progress.running} running  {progress.elapsed_seconds:5.1f}s"
    )


def stopped_following(execution_arn: str) -> None:
    """Say that Ctrl-C stopped following a stack's execution, not the execution."""
    print(
        "\nstopped following; the execution goes on. Follow it again with:\n"
        f"  groveflow follow {execution_arn}",
        file=sys.stderr,
    )


def interrupted(command: str, run_id: str, state_dir: str) -> None:
    """Say, in one line, where a stopped local run's state is and how to resume it."""
    again = f"groveflow {command}"
    again += f" --state-dir {state_dir}" if state_dir != ".groveflow" else ""
    print(
        f"\ngroveflow: interrupted; what {run_id} stored so far is kept in {state_dir}: "
        f"rerun `{again}` to resume",
        file=sys.stderr,
    )


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (use a number or null)")


def read_json(path: str, what: str) -> Any:
    """A JSON file the user named, or one line saying what is wrong with it."""
    try:
        return json.loads(Path(path).read_bytes(), parse_constant=_not_json)
    except FileNotFoundError:
        raise SystemExit(f"groveflow: no such {what} file: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise SystemExit(f"groveflow: cannot read {what} file {path}: {error}") from None
    except ValueError as error:
        raise SystemExit(f"groveflow: {path} is not valid JSON: {error}") from None


def state_dir(value: str) -> Path:
    """``--state-dir``, created if needed and checked writable before any work."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise SystemExit(f"groveflow: --state-dir {path} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"groveflow: --state-dir {path} cannot be created: {error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SystemExit(f"groveflow: --state-dir {path} is not writable")
    return path


def summary(result: RunResult) -> dict[str, Any]:
    """The run as the ``--json`` summary states it: the same fields for a training run and
    a prediction (``run_id`` and the forest's fields are a training run's, None for a
    prediction; ``prediction_id`` and ``predictions`` say where scores went, if any)."""
    output = dict(result.output)
    predictions = dict(result.predictions) if result.predictions else None
    if result.kind == "predict" and result.succeeded and result.local_dir is not None:
        output["predictions_dir"] = str(result.local_dir)
        predictions = {**(predictions or {}), "predictions_dir": str(result.local_dir)}
    return {
        "status": result.status,
        "run_id": output.get("run_id") if result.kind == "train" else None,
        "prediction_id": result.run_id
        if result.kind == "predict"
        else (predictions or {}).get("prediction_id"),
        "trees_requested": result.trees_requested,
        "trees_built": result.trees_built,
        "groves_built": result.groves_built,
        "groves_reused": result.groves_reused,
        "metrics": result.metrics,
        "oob": result.oob,
        "predictions": predictions,
        "seconds": round(result.seconds, 2),
        "model_dir": str(result.model_dir) if result.model_dir is not None else None,
        "model_uri": result.model_uri,
        "execution_arn": result.execution_arn,
        "error": result.error,
        "cause": result.cause,
        "output": output,
        "cost": result.cost,
        "phases": result.phase_seconds,
        "memory": {stage: asdict(use) for stage, use in result.memory.items()},
        "estimate": _estimate(result),
    }


def _estimate(result: RunResult) -> dict[str, Any] | None:
    """The plan's estimate beside the run's measurements, with their ratios (measured over
    estimated)."""
    check = result.estimate
    if check is None:
        return None
    return {**asdict(check), "wall_ratio": check.wall_ratio, "cost_ratio": check.cost_ratio}


def emit(result: RunResult, as_json: bool) -> None:
    """Print the run: its JSON summary, or a few lines of text."""
    described = summary(result)
    if as_json:
        print(json.dumps(json_safe(described), indent=2, allow_nan=False))
    elif not result.succeeded:
        print(f"run failed: {result.error}: {result.cause}")
        for use in result.memory.values():
            if use.out_of_memory:
                print(_out_of_memory(use))
    elif result.kind == "predict":
        _print_prediction(described, result.memory)
    else:
        _print_training(described, result.memory)


def _print_prediction(described: dict[str, Any], memory: dict[str, StageMemory]) -> None:
    scored = described["predictions"] or {}
    print(f"predict   {described['prediction_id']}")
    print(f"rows      {scored.get('n_rows')} scored, in {scored.get('n_parts')} parts")
    _print_costs(described, memory)
    print(f"scores    {scored.get('predictions_dir') or scored.get('predictions_uri')}")


def _print_costs(described: dict[str, Any], memory: dict[str, StageMemory]) -> None:
    """The lines a training run and a prediction share: seconds, cost, estimate, memory."""
    print(f"seconds   {described['seconds']:.1f}")
    cost = described.get("cost")
    if cost:
        print(
            f"cost      ${cost['total_usd']:.6f} on AWS ({cost['gb_seconds']:.1f} GB-s, "
            f"{cost['lambda_requests']} requests, {cost['state_transitions']} transitions)"
        )
        if cost.get("charges"):  # the same categories as the estimate's
            print(f"charges   {_charges(cost['charges'])}")
    if described.get("estimate"):
        print(f"estimate  {_estimate_line(described['estimate'])}")
    for n, use in enumerate(memory.values()):
        print(f"{'memory' if n == 0 else '':<9} {_stage_memory(use)}")


def _print_training(described: dict[str, Any], memory: dict[str, StageMemory]) -> None:
    metrics = described["metrics"] or {}
    headline = next((m for m in ("accuracy", "r2") if metrics.get(m) is not None), None)
    print(f"run       {described['run_id']}")
    print(
        f"trees     {described['trees_built']} of {described['trees_requested']} "
        f"in {described['groves_built']} groves"
    )
    if described.get("groves_reused"):
        print(
            f"reused    {described['groves_reused']} of {described['groves_built']} groves, "
            "stored by an earlier execution of this run (not fitted again)"
        )
    if headline:
        print(f"holdout   {headline} {metrics[headline]:.4f} on {metrics['n_test']} rows")
    elif metrics.get("n_test"):
        print(f"holdout   undefined on {metrics['n_test']} rows: {metrics.get('undefined')}")
    else:
        print("holdout   none (test_fraction=0)")
    fan_out = described["output"].get("fan_out") or {}
    why = fan_out.get("why") or ""
    if why and not why.endswith("to build"):  # the account or reserved builders clamped it
        print(f"fan-out   {why}")
    if fan_out.get("grove_choice"):  # the request left grove_size out: what the plan chose
        print(f"groves    {fan_out['grove_choice']}")
    seen = described["output"].get("data")
    if seen:
        read = ""
        if seen.get("grove_shards") is not None:
            read = (
                f"; a grove read up to {seen['grove_shards']} shards "
                f"({seen['grove_bytes_read'] / 2**20:.1f} MB)"
            )
        print(f"data      {seen['rule']}{read}")
    oob = described.get("oob")
    if oob:
        uncovered = oob["n_rows_without_oob"]
        note = f", {uncovered} with no OOB tree" if uncovered else ""
        print(f"oob       score {oob['oob_score']:.4f} on {oob['n_rows']} training rows{note}")
    _print_costs(described, memory)
    print(f"model     {described['model_dir'] or described['model_uri']}")
    if described.get("predictions"):
        print(f"scores    {described['predictions']['predictions_uri']}")


def _estimate_line(check: dict[str, Any]) -> str:
    """The summary's estimate: what ``groveflow estimate`` gives for the run's input and
    workers (:func:`estimate_figures`)."""
    return estimate_figures(
        check["estimated_local_seconds"],
        check["workers"],
        check["estimated_aws_seconds"],
        check["estimated_cost_usd"],
    )


def estimate_figures(
    local_seconds: float | None, workers: int | None, aws_seconds: float, cost_usd: float
) -> str:
    """``local 2.39 s on 2 workers; AWS 9.0 s, $0.002048``: one estimate, as both
    ``groveflow estimate`` and a run's summary print it."""
    aws = f"AWS {aws_seconds:.1f} s, ${cost_usd:.6f}"
    if local_seconds is None:
        return aws
    return f"local {local_seconds:.2f} s on {workers} workers; {aws}"


def emit_search(result: SearchResult, as_json: bool) -> None:
    """Print a search: its winner's run as :func:`emit` does, then the leaderboard."""
    emit(result.run, as_json)
    if result.succeeded and not as_json:
        print(
            f"search    {result.search_id}: {result.strategy} on {result.metric}, "
            f"{result.trees_fitted} trees fitted, rounds {result.rounds}"
        )
        for candidate in result.candidates[:10]:
            scores = ", ".join(f"{s:.4f}@{t}" for t, s in candidate.scores)
            print(f"  {candidate.run_id}  {scores}  {json.dumps(candidate.params)}")


def emit_estimate(estimate: RunEstimate, as_json: bool) -> None:
    """Print a run's estimate (``groveflow estimate``): as JSON, or a few lines of text
    whose first, ``estimate``, is the line a run's summary prints for the same figures."""
    if as_json:
        print(json.dumps(json_safe(estimate.to_dict()), indent=2, allow_nan=False))
        return
    aws, priced, local = estimate.aws, estimate.cost, estimate.local
    waves = -(-estimate.groves // estimate.concurrency)
    print(
        "estimate  "
        + estimate_figures(
            None if local is None else local.total_seconds,
            None if local is None else local.workers,
            aws.total_seconds,
            priced.total_usd,
        )
    )
    if local is not None:
        print(
            f"local     {local.total_seconds:.2f} s on {local.workers} workers: engine "
            f"{local.overhead_seconds:.2f}, plan {local.plan_seconds:.2f}, groves "
            f"{local.groves_seconds:.2f}, merge {local.merge_seconds:.2f}"
        )
    print(
        f"AWS       {aws.total_seconds:.1f} s: plan {aws.plan_seconds:.1f}, ramp "
        f"{aws.ramp_seconds:.0f}, cold starts {aws.cold_start_seconds:.1f}, split read "
        f"{aws.s3_read_seconds:.1f}, groves {aws.groves_seconds:.1f} ({waves} waves), "
        f"merge {aws.merge_seconds:.1f}"
    )
    print(
        f"cost      ${priced.total_usd:.6f} on AWS ({priced.gb_seconds:.1f} GB-s at "
        f"{estimate.builder_memory_mb} MB {estimate.architecture} builders, "
        f"{priced.lambda_requests} requests, {priced.state_transitions} transitions; "
        f"{priced.region} prices of {priced.prices_as_of})"
    )
    if priced.charges:
        print(f"charges   {_charges(priced.charges)}")
    print(
        f"run       {estimate.n_trees} trees in {estimate.groves} groves of "
        f"{estimate.trees_per_grove}, {estimate.concurrency} at once; trial grove of "
        f"{estimate.trial_trees} trees: {1000 * estimate.seconds_per_tree:.2f} ms a tree"
    )
    if estimate.grove_choice:
        print(f"groves    {estimate.grove_choice}")
    if estimate.merge_mb_per_tree > 0:
        print(
            f"merge     about {estimate.merge_size.peak_mb(estimate.n_trees)} MB at its peak "
            f"({estimate.merge_mb_per_tree:.3f} MB a tree, {estimate.merge_fixed_mb:.0f} MB "
            "besides); MergeMemorySize must hold it"
        )


def _charges(charges: dict[str, float]) -> str:
    """The cost by category (``cost.charges``), largest first, those under $0.0000005 left
    out."""
    shown = sorted(((usd, name) for name, usd in charges.items() if usd >= 5e-7), reverse=True)
    return ", ".join(f"{name.replace('_', ' ')} ${usd:.6f}" for usd, name in shown)


def _stage_memory(use: StageMemory) -> str:
    """``BuildGroves   245 of 3008 MB used (size guard's estimate 201 MB)``."""
    used = "not measured" if use.max_memory_used_mb is None else f"{use.max_memory_used_mb}"
    line = f"{use.stage:<17} {used} of {use.memory_mb} MB used"
    if use.estimate_mb is not None:
        line += f" (size guard's estimate {use.estimate_mb} MB)"
    if use.out_of_memory:
        line += f", {use.out_of_memory} out of memory"
    return line


def _out_of_memory(use: StageMemory) -> str:
    """Why a run failed when a stage's invocations ran out of memory, with the figures."""
    peak = f"{use.max_memory_used_mb} MB" if use.max_memory_used_mb is not None else "?"
    return (
        f"out of memory: {use.stage} ({use.function}): {use.out_of_memory} of "
        f"{use.invocations} invocations failed with Runtime.OutOfMemory, peak {peak} over "
        f"its MemorySize of {use.memory_mb} MB; give {use.function} more memory"
    )


def emit_entries(entries: list[Entry], where: str, as_json: bool) -> None:
    """Print stored runs (``groveflow runs``): a JSON list, or one line each under a header."""
    if as_json:
        print(json.dumps(json_safe([e.to_dict() for e in entries]), indent=2, allow_nan=False))
        return
    if not entries:
        print(f"no runs, searches or predictions in {where}")
        return
    rows = [("ID", "KIND", "STATUS", "TREES", "METRIC", "COST USD", "CREATED")]
    for e in entries:
        figure = "" if e.metric is None else f"{e.metric} {_figure(e.value)}"
        cost = "" if e.cost_usd is None else f"{e.cost_usd:.6f}"
        trees = "" if e.trees is None else str(e.trees)
        rows.append((e.id, e.kind, e.status, trees, figure, cost, e.created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if i in (3, 5) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on stderr; True only for ``y`` or ``yes`` (no answer is no)."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")

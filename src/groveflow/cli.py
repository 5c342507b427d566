"""The ``groveflow`` command: a thin layer of options over the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from groveflow.errors import GroveflowError

__all__ = ["main"]


class _Progress:
    """A one-line progress bar on stderr, fed by the engine's invocations."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def __call__(self, invocation: Any) -> None:
        if invocation.function == "PlanFunction" and invocation.error_type is None:
            self.total = int(invocation.output.get("n_groves", 0))
        elif invocation.function == "BuildGroveFunction":
            if invocation.error_type is None:
                self.done += 1
            else:
                self.failed += 1
        self.draw()

    def draw(self) -> None:
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        line = (
            f"\rgroves [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"  failed attempts {self.failed}  {elapsed:5.1f}s"
        )
        sys.stderr.write(line)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.total:
            sys.stderr.write("\n")


def _read_input(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"groveflow: no such input file: {path}") from None
    except json.JSONDecodeError as error:
        raise SystemExit(f"groveflow: {path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"groveflow: {path} must hold a JSON object")
    return value


def _readable_cause(cause: str | None) -> str | None:
    """A Lambda error document's message, without its stack trace."""
    try:
        document = json.loads(cause or "")
    except json.JSONDecodeError:
        return cause
    if isinstance(document, dict) and "errorMessage" in document:
        return str(document["errorMessage"])
    return cause


def _summary(result: Any, model_dir: Path) -> dict[str, Any]:
    output = result.output or {}
    return {
        "status": result.status,
        "run_id": output.get("run_id"),
        "trees_requested": output.get("trees_requested"),
        "trees_built": output.get("trees_built"),
        "groves_built": output.get("groves_built"),
        "metrics": output.get("metrics"),
        "seconds": round(result.seconds, 2),
        "model_dir": str(model_dir),
        "model_uri": output.get("model_uri"),
        "execution_arn": result.execution_arn,
        "error": result.error,
        "cause": _readable_cause(result.cause),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    if summary["status"] != "SUCCEEDED":
        print(f"run failed: {summary['error']}: {summary['cause']}")
        return
    metrics = summary["metrics"] or {}
    headline = next((m for m in ("accuracy", "r2") if m in metrics), None)
    print(f"run       {summary['run_id']}")
    print(
        f"trees     {summary['trees_built']} of {summary['trees_requested']} "
        f"in {summary['groves_built']} groves"
    )
    if headline:
        print(f"holdout   {headline} {metrics[headline]:.4f} on {metrics['n_test']} rows")
    else:
        print("holdout   none (test_fraction=0)")
    print(f"seconds   {summary['seconds']:.1f}")
    print(f"model     {summary['model_dir']}")


def _train(args: argparse.Namespace) -> int:
    from groveflow.local import LocalEngine

    request = _read_input(args.input)
    run_id = (
        args.run_id
        or request.get("run_id")
        or f"{Path(args.input).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    request["run_id"] = run_id
    progress = _Progress(enabled=(not args.json and sys.stderr.isatty()) or args.progress)
    with LocalEngine(
        workers=args.workers, state_dir=Path(args.state_dir), on_invoke=progress
    ) as engine:
        name = f"{run_id[:60]}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}"
        result = engine.run("TrainStateMachine", request, name=name, run_id=run_id)
        progress.finish()
        summary = _summary(result, engine.run_dir(run_id) / "model")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0 if result.status == "SUCCEEDED" else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groveflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a forest from an execution input file")
    train.add_argument("input", help="execution input JSON, e.g. events/train-digits.json")
    train.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
    )
    train.add_argument(
        "--run-id", default=None, help="run id (default: the input's, else file name + time)"
    )
    train.add_argument(
        "--state-dir", default=".groveflow", help="where the local bucket is mirrored"
    )
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    train.add_argument(
        "--progress", action="store_true", help="show progress even when not on a terminal"
    )
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``groveflow`` command."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except GroveflowError as error:
        print(f"groveflow: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

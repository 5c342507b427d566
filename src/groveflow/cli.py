"""The ``groveflow`` command: a thin layer of options over the library.

``train`` and ``predict`` run on the embedded local engine by default, or start
the execution on a deployed stack (``--stack NAME`` or ``--state-machine-arn``)
and follow it. ``serve`` exposes the local engine to the AWS CLI and boto3;
``report``, ``export``, ``invoke`` and ``follow`` work on runs and functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from groveflow.errors import GroveflowError
from groveflow.follow import Progress, execution_cost, follow, phase_seconds

__all__ = ["main"]

MAP_CHILD_FUNCTIONS = ("BuildGroveFunction", "ScoreShardFunction")


PLAIN_PROGRESS_SECONDS = 15.0
"""Without a terminal, a plain progress line at most this often."""


class _ProgressBar:
    """The Map Run's items done, failed and running, and elapsed time, on stderr.

    On a terminal one line redrawn in place; otherwise (a log file, CI) a plain line
    at most every :data:`PLAIN_PROGRESS_SECONDS` while something changes.
    """

    def __init__(self, enabled: bool, terminal: bool | None = None) -> None:
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.last: Progress | None = None
        self._drawn = False
        self._last_plain: tuple[float, tuple[int, int]] | None = None

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        if not self.enabled or not progress.total:
            return
        text = (
            f"{progress.succeeded}/{progress.total} done, {progress.failed} failed, "
            f"{progress.running} running  {progress.elapsed_seconds:5.1f}s"
        )
        label = progress.map_label or "items"
        if self.terminal:
            width = 30
            filled = int(width * progress.succeeded / progress.total)
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {text}")
            self._drawn = True
        else:
            now, counts = time.monotonic(), (progress.succeeded, progress.failed)
            if self._last_plain is not None and (
                counts == self._last_plain[1] or now - self._last_plain[0] < PLAIN_PROGRESS_SECONDS
            ):
                return
            self._last_plain = (now, counts)
            sys.stderr.write(f"{label}: {text}\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            self._drawn = False


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (use a number or null)")


def _read_json(path: str, what: str) -> Any:
    """A JSON file the user named, or one line saying what is wrong with it."""
    try:
        return json.loads(Path(path).read_bytes(), parse_constant=_not_json)
    except FileNotFoundError:
        raise SystemExit(f"groveflow: no such {what} file: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise SystemExit(f"groveflow: cannot read {what} file {path}: {error}") from None
    except ValueError as error:
        raise SystemExit(f"groveflow: {path} is not valid JSON: {error}") from None


def _read_input(path: str) -> dict[str, Any]:
    value = _read_json(path, "input")
    if not isinstance(value, dict):
        raise SystemExit(f"groveflow: {path} must hold a JSON object")
    return value


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _state_dir(args: argparse.Namespace) -> Path:
    """``--state-dir``, created if needed and checked writable before any work."""
    path = Path(args.state_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise SystemExit(f"groveflow: --state-dir {path} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"groveflow: --state-dir {path} cannot be created: {error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SystemExit(f"groveflow: --state-dir {path} is not writable")
    return path


def _readable_cause(cause: str | None) -> str | None:
    """A Lambda error document's message, without its stack trace."""
    try:
        document = json.loads(cause or "")
    except json.JSONDecodeError:
        return cause
    if isinstance(document, dict) and "errorMessage" in document:
        return str(document["errorMessage"])
    return cause


def _summary(description: dict[str, Any], seconds: float, model_dir: str | None) -> dict[str, Any]:
    output = json.loads(description.get("output") or "null") or {}
    return {
        "status": description["status"],
        "run_id": output.get("run_id"),
        "trees_requested": output.get("trees_requested"),
        "trees_built": output.get("trees_built"),
        "groves_built": output.get("groves_built"),
        "metrics": output.get("metrics"),
        "predictions": output.get("predictions"),
        "seconds": round(seconds, 2),
        "model_dir": model_dir,
        "model_uri": output.get("model_uri"),
        "execution_arn": description["executionArn"],
        "error": description.get("error"),
        "cause": _readable_cause(description.get("cause")),
        "output": output,
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
    if summary.get("cost"):
        cost = summary["cost"]
        print(
            f"cost      ${cost['total_usd']:.6f} on AWS ({cost['gb_seconds']:.1f} GB-s, "
            f"{cost['lambda_requests']} requests, {cost['state_transitions']} transitions)"
        )
    print(f"model     {summary['model_dir'] or summary['model_uri']}")
    if summary.get("predictions"):
        print(f"scores    {summary['predictions']['predictions_uri']}")


def _cost(result: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    from groveflow.cost import child_transitions, count_state_transitions, estimate_cost

    children = [i for i in result.invocations if i.function in MAP_CHILD_FUNCTIONS]
    items = {(i.function, json.dumps(i.payload, sort_keys=True)) for i in children}
    transitions = count_state_transitions(history, child_transitions(len(items), len(children)))
    return estimate_cost(result.invocations, transitions).to_dict()


def _record(path: Path, result: Any, cost: dict[str, Any]) -> None:
    """Keep a succeeded run's invocations and cost beside the mirror, for ``groveflow report``.

    Only a run that succeeded writes it: a run refused at Plan (say, its id belongs to
    another run) must not replace the record of the run that owns the id.
    """
    invocations = [
        {"function": i.function, "duration_ms": i.duration_ms, "memory_mb": i.memory_mb}
        for i in result.invocations
    ]
    record = {"execution_arn": result.execution_arn, "invocations": invocations, "cost": cost}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(_json_safe(record), indent=2, allow_nan=False))
    os.replace(temp, path)


def _model_run_id(request: dict[str, Any]) -> str | None:
    """The local run a prediction input's ``model`` names (a run id or its S3 URI), if any."""
    from groveflow.ids import is_valid_id

    model = request.get("model")
    if not isinstance(model, str):
        return None
    match = re.fullmatch(r"s3://[^/]+/runs/([^/]+)/.*", model)
    run_id = match.group(1) if match else model
    return run_id if is_valid_id(run_id) else None


def _execution_name(run_id: str) -> str:
    return f"{run_id[:60]}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}"


def _start_fork_server() -> None:
    """Start the workers' fork server now (its scikit-learn import overlaps the engine's start).

    With Ctrl-C ignored while it starts, so it and every worker it forks ignore the
    SIGINT a terminal sends the whole process group: this process alone stops, closes
    the pool and says how to resume, with no traceback from each worker.
    """
    from groveflow.local.workers import start_fork_server

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start_fork_server()
    finally:
        signal.signal(signal.SIGINT, previous)


class _Terminated(Exception):
    """SIGTERM arrived: stop as Ctrl-C does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _interrupted(args: argparse.Namespace, machine: str, run_id: str, code: int) -> int:
    again = f"groveflow {'predict' if machine == 'PredictStateMachine' else 'train'} {args.input}"
    if machine == "TrainStateMachine":
        again += f" --run-id {run_id}"
    if args.state_dir != ".groveflow":
        again += f" --state-dir {args.state_dir}"
    print(
        f"\ngroveflow: interrupted; what {run_id} stored so far is kept in {args.state_dir}: "
        f"rerun `{again}` to resume",
        file=sys.stderr,
    )
    return code


def _run_locally(
    args: argparse.Namespace, machine: str, request: dict[str, Any], run_id: str
) -> int:
    from groveflow.local.faults import parse_faults

    try:
        faults = parse_faults(args.inject_faults) if args.inject_faults else None
    except ValueError as error:
        raise SystemExit(f"groveflow: --inject-faults: {error}") from None
    state_dir = _state_dir(args)
    _start_fork_server()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run_on_engine(args, machine, request, run_id, state_dir=state_dir, faults=faults)
    except KeyboardInterrupt:
        return _interrupted(args, machine, run_id, 130)
    except _Terminated:
        return _interrupted(args, machine, run_id, 143)


def _run_on_engine(
    args: argparse.Namespace,
    machine: str,
    request: dict[str, Any],
    run_id: str,
    *,
    state_dir: Path,
    faults: Any,
) -> int:
    from groveflow.local import LocalEngine
    from groveflow.local.engine import execution_record

    bar = _ProgressBar(enabled=not args.json)
    predicting = machine == "PredictStateMachine"
    with LocalEngine(workers=args.workers, state_dir=state_dir, faults=faults) as engine:
        model_run = _model_run_id(request) if predicting else None
        if model_run is not None:
            engine.restore(model_run)  # a model trained by an earlier process
        try:
            result = engine.run(
                machine,
                request,
                name=_execution_name(run_id),
                run_id=run_id,
                on_progress=bar if bar.enabled else None,
            )
        finally:
            bar.finish()
        description = {
            "status": result.status,
            "output": json.dumps(result.output) if result.output is not None else None,
            "executionArn": result.execution_arn,
            "error": result.error,
            "cause": result.cause,
        }
        model_dir = (
            str(engine.run_dir(run_id) / "model") if machine == "TrainStateMachine" else None
        )
        summary = _summary(description, result.seconds, model_dir)
        if result.status == "SUCCEEDED" and machine == "PredictStateMachine":
            summary["output"]["predictions_dir"] = str(engine.predictions_dir(run_id))
        history = engine.history(result.execution_arn)
        summary["cost"] = _cost(result, history)
        summary["phases"] = phase_seconds(history)
        if result.status == "SUCCEEDED":
            ids = {"prediction_id": run_id} if predicting else {"run_id": run_id}
            _record(execution_record(engine.state_dir, **ids), result, summary["cost"])
    _emit(args, summary, machine)
    return 0 if result.status == "SUCCEEDED" else 1


def _emit(args: argparse.Namespace, summary: dict[str, Any], machine: str) -> None:
    if args.json:
        print(json.dumps(_json_safe(summary), indent=2, allow_nan=False))
    elif machine == "TrainStateMachine":
        _print_summary(summary)
    elif summary["status"] == "SUCCEEDED":
        print(json.dumps(_json_safe(summary["output"]), indent=2, allow_nan=False))
    else:
        print(f"run failed: {summary['error']}: {summary['cause']}")


def _client(args: argparse.Namespace, service: str) -> Any:
    import boto3

    session = boto3.session.Session(region_name=args.region)
    if _is_loopback(args.endpoint_url):
        # groveflow serve: any region and credentials will do, none need be configured.
        return session.client(  # type: ignore[call-overload]
            service,
            endpoint_url=args.endpoint_url,
            region_name=session.region_name or "us-east-1",
            aws_access_key_id="groveflow-local",
            aws_secret_access_key="groveflow-local",
        )
    if session.region_name is None:
        raise SystemExit("groveflow: no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return session.client(service, endpoint_url=args.endpoint_url)  # type: ignore[call-overload]


def _is_loopback(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return False
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def _sfn_client(args: argparse.Namespace) -> Any:
    return _client(args, "stepfunctions")


def _state_machine_arn(args: argparse.Namespace, output_key: str) -> str:
    if args.state_machine_arn:
        return str(args.state_machine_arn)
    if not args.stack:  # --endpoint-url alone: the endpoint's one state machine of that kind
        return _served_state_machine(args, output_key.removesuffix("Arn"))
    stack = _client(args, "cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == output_key:
            return str(output["OutputValue"])
    raise SystemExit(f"groveflow: stack {args.stack} has no output {output_key}")


def _served_state_machine(args: argparse.Namespace, logical_id: str) -> str:
    """The ARN of the state machine named ``*-<logical_id>`` at ``--endpoint-url``."""
    sfn = _sfn_client(args)
    pages = sfn.get_paginator("list_state_machines").paginate()
    arns = [
        m["stateMachineArn"]
        for page in pages
        for m in page["stateMachines"]
        if m["name"].endswith(f"-{logical_id}")
    ]
    if len(arns) != 1:
        raise SystemExit(
            f"groveflow: {len(arns)} state machines named *-{logical_id} at "
            f"{args.endpoint_url}; name one with --state-machine-arn"
            + (f": {', '.join(arns)}" if arns else "")
        )
    return str(arns[0])


def _follow_remote(args: argparse.Namespace, sfn: Any, arn: str, machine: str) -> int:
    bar = _ProgressBar(enabled=not args.json)
    started = time.monotonic()
    # A groveflow serve endpoint on this machine answers fast, but each look costs its
    # server a few milliseconds of the CPU the workers use.
    poll = 0.5 if _is_loopback(args.endpoint_url) else 2.0
    try:
        description = follow(sfn, arn, bar if bar.enabled else None, poll_seconds=poll)
    except KeyboardInterrupt:
        bar.finish()
        print(
            f"\nstopped following; the execution goes on. Follow it again with:\n"
            f"  groveflow follow {arn}",
            file=sys.stderr,
        )
        return 130
    bar.finish()
    summary = _summary(description, time.monotonic() - started, None)
    summary["cost"] = execution_cost(
        sfn, _client(args, "lambda"), _client(args, "logs"), description
    )
    _emit(args, summary, machine)
    return 0 if description["status"] == "SUCCEEDED" else 1


def _run_remote(
    args: argparse.Namespace, machine: str, request: dict[str, Any], run_id: str
) -> int:
    sfn = _sfn_client(args)
    output_key = (
        "TrainStateMachineArn" if machine == "TrainStateMachine" else "PredictStateMachineArn"
    )
    arn = sfn.start_execution(
        stateMachineArn=_state_machine_arn(args, output_key),
        name=_execution_name(run_id),
        input=json.dumps(request),
    )["executionArn"]
    print(f"started {arn}", file=sys.stderr)
    return _follow_remote(args, sfn, arn, machine)


def _run_id(given: Any, name: str, input_path: str, error: type[Exception]) -> str:
    """The id a command runs under: the one given (checked), else one made from the file name."""
    from groveflow.ids import check_id, default_id

    if given is None:
        return default_id(Path(input_path).stem)
    return check_id(given, name=name, error=error)


def _train(args: argparse.Namespace) -> int:
    from groveflow.errors import InvalidRequest

    request = _read_input(args.input)
    if args.run_id is not None:
        run_id = _run_id(args.run_id, "--run-id", args.input, InvalidRequest)
    else:
        run_id = _run_id(request.get("run_id"), "run_id", args.input, InvalidRequest)
    request["run_id"] = run_id
    if args.stack or args.state_machine_arn or args.endpoint_url:
        return _run_remote(args, "TrainStateMachine", request, run_id)
    return _run_locally(args, "TrainStateMachine", request, run_id)


def _predict(args: argparse.Namespace) -> int:
    from groveflow.errors import InvalidPredictRequest

    request = _read_input(args.input)
    given = request.get("prediction_id")
    prediction_id = _run_id(given, "prediction_id", args.input, InvalidPredictRequest)
    request["prediction_id"] = prediction_id
    if args.stack or args.state_machine_arn or args.endpoint_url:
        return _run_remote(args, "PredictStateMachine", request, prediction_id)
    return _run_locally(args, "PredictStateMachine", request, prediction_id)


def _follow(args: argparse.Namespace) -> int:
    return _follow_remote(args, _sfn_client(args), args.execution_arn, "TrainStateMachine")


def _local_run_dir(args: argparse.Namespace) -> Path:
    from groveflow.errors import InvalidRequest
    from groveflow.ids import check_id
    from groveflow.layout import keys
    from groveflow.local.engine import mirrored

    run_id = check_id(args.run, name="RUN", error=InvalidRequest)
    run_dir = mirrored(Path(args.state_dir).resolve(), keys.run_prefix(run_id))
    if not (run_dir / "model" / "manifest.json").is_file():
        raise SystemExit(f"groveflow: no finished local run {args.run!r} in {run_dir.parent}")
    _local_manifest(run_dir)  # a damaged manifest is named before any work
    return run_dir


def _local_manifest(run_dir: Path) -> dict[str, Any]:
    """A local run's model manifest; :class:`ArtifactError` naming the file if it is damaged."""
    from groveflow.errors import ArtifactError

    path = run_dir / "model" / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as error:
        raise ArtifactError(f"{path} is not valid JSON (truncated or damaged): {error}") from None
    if not isinstance(manifest, dict) or not {"kind", "params", "forest"} <= set(manifest):
        raise ArtifactError(f"{path} is not a groveflow model manifest")
    return manifest


def _report(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from groveflow.cost import CostEstimate
    from groveflow.local.engine import execution_record
    from groveflow.report import write_report

    run_dir = _local_run_dir(args)
    record_path = execution_record(Path(args.state_dir).resolve(), run_id=args.run)
    if not record_path.is_file():
        record_path = run_dir / "execution.json"  # where earlier versions kept it
    invocations = cost = None
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        invocations = [SimpleNamespace(**i) for i in record["invocations"]]
        cost = CostEstimate(**record["cost"]) if record.get("cost") else None
    out_dir = Path(args.out or run_dir / "report")
    path = write_report(run_dir, out_dir, invocations, cost)
    print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from groveflow.artifact import load_forest

    run_dir = _local_run_dir(args)
    manifest = _local_manifest(run_dir)
    estimator = load_forest(str(run_dir / "model")).to_sklearn(manifest["kind"], manifest["params"])
    out = Path(args.out or f"{args.run}.{args.format}")
    if args.format == "joblib":
        import joblib

        joblib.dump(estimator, out)
    else:
        import skops.io

        skops.io.dump(estimator, out)
    print(out)
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from groveflow.local.engine import project_root
    from groveflow.local.template import load_template

    functions = load_template(project_root(), bucket="groveflow-local").functions
    if args.function not in functions:
        raise SystemExit(
            f"groveflow: no function {args.function!r} in template.yaml; "
            f"accepted: {', '.join(sorted(functions))}"
        )
    event = json.dumps(_read_json(args.event, "event")).encode()
    state_dir = _state_dir(args)
    _start_fork_server()
    from groveflow.local import LocalEngine

    with LocalEngine(workers=1, state_dir=state_dir) as engine:
        outcome = engine.invoke(args.function, event)
    print(json.dumps(json.loads(outcome.payload), indent=2))
    return 0 if outcome.error_type is None else 1


def _serve(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    with socket.socket() as probe:  # a taken port is one line, before any work
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as error:
            raise SystemExit(f"groveflow: --port {args.port} is not free: {error}") from None
    _start_fork_server()
    from groveflow.local import LocalEngine

    signal.signal(signal.SIGTERM, _on_sigterm)
    with LocalEngine(
        workers=args.workers,
        state_dir=state_dir,
        stack_name="groveflow",
        port=args.port,
        serve=True,
    ) as engine:
        print(f"groveflow local endpoint: {engine.endpoint}  (region us-east-1, any credentials)")
        for logical_id in engine.stack.state_machines:
            print(f"  {logical_id}: {engine.state_machine_arn(logical_id)}")
        print(f"  bucket: s3://{engine.bucket}")
        print(f"  runs and predictions are mirrored to {engine.state_dir} as they are stored")
        print("Ctrl-C stops the server.", flush=True)
        try:
            while True:
                engine.wait_for_activity(5.0)
                _report_ended(engine)
        except (KeyboardInterrupt, _Terminated):
            return 0


def _report_ended(engine: Any) -> None:
    """Print the executions that ended; a failure to look is logged, never fatal."""
    try:
        ended = engine.ended_runs()
    except Exception as error:  # the server must outlive any one bad look
        logging.getLogger("groveflow.serve").exception("listing ended executions failed")
        print(f"groveflow serve: could not list ended executions: {error!r}", flush=True)
        return
    for execution_arn, run_id in ended:
        if run_id is None:
            print(f"ended: {execution_arn} (no accepted run id: nothing mirrored)", flush=True)
        else:
            print(f"ended: {run_id}, mirrored to {engine.state_dir}", flush=True)


def _remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="start the execution on this deployed stack instead")
    parser.add_argument("--state-machine-arn", help="start the execution on this state machine")
    parser.add_argument("--region", default=None, help="AWS region of the stack")
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="run on this endpoint, e.g. a warm `groveflow serve` (its state machine is found "
        "by name unless --state-machine-arn or --stack names it)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _local_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: one per core)",
    )
    parser.add_argument(
        "--state-dir", default=".groveflow", help="where the local bucket is mirrored"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--inject-faults",
        default=None,
        metavar="SPEC",
        help="local engine only: e.g. throttle=0.2,crash=0.05,timeout=0.02,seed=7",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="groveflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a forest from an execution input file")
    train.add_argument("input", help="execution input JSON, e.g. events/train-digits.json")
    train.add_argument(
        "--run-id", default=None, help="run id (default: the input's, else file name + time)"
    )
    _local_options(train)
    _remote_options(train)
    train.set_defaults(func=_train)

    predict = commands.add_parser("predict", help="score a dataset with an existing model")
    predict.add_argument("input", help="prediction input JSON, e.g. events/predict-digits.json")
    _local_options(predict)
    _remote_options(predict)
    predict.set_defaults(func=_predict)

    follow_cmd = commands.add_parser("follow", help="follow an execution on AWS or groveflow serve")
    follow_cmd.add_argument("execution_arn")
    follow_cmd.add_argument("--json", action="store_true")
    follow_cmd.add_argument("--region", default=None)
    follow_cmd.add_argument("--endpoint-url", default=None)
    follow_cmd.set_defaults(func=_follow)

    report = commands.add_parser("report", help="write an HTML report of a local run")
    report.add_argument("run", help="run id")
    report.add_argument("--state-dir", default=".groveflow")
    report.add_argument("--out", default=None, help="directory (default: <run>/report)")
    report.set_defaults(func=_report)

    export = commands.add_parser("export", help="write a local run's model as a scikit-learn file")
    export.add_argument("run", help="run id")
    export.add_argument("--format", choices=("joblib", "skops"), default="joblib")
    export.add_argument("--state-dir", default=".groveflow")
    export.add_argument("--out", default=None)
    export.set_defaults(func=_export)

    invoke = commands.add_parser(
        "invoke", help="run one function's handler on an event (no Docker)"
    )
    invoke.add_argument("function", help="logical id in template.yaml, e.g. PlanFunction")
    invoke.add_argument("event", help="event JSON file")
    invoke.add_argument("--state-dir", default=".groveflow")
    invoke.set_defaults(func=_invoke)

    serve = commands.add_parser("serve", help="serve the local engine to the AWS CLI and boto3")
    serve.add_argument("--port", type=_port, default=8083)
    serve.add_argument("--workers", type=_positive_int, default=None)
    serve.add_argument("--state-dir", default=".groveflow")
    serve.set_defaults(func=_serve)
    return parser


OPTIONAL = {"matplotlib": "report", "skops": "export", "pyarrow": "parquet"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``groveflow`` command."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except GroveflowError as error:
        print(f"groveflow: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        extra = OPTIONAL.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"groveflow: this needs {error.name}: pip install 'groveflow[{extra}]'", file=sys.stderr
        )
        return 2
    except Exception as error:
        if not type(error).__module__.startswith("botocore."):
            raise
        # No credentials, access denied, no such execution...: AWS's own words, no traceback.
        print(f"groveflow: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return code


def run() -> NoReturn:
    """The ``groveflow`` console script: :func:`main`, then exit without interpreter teardown.

    A local run leaves moto's server and its modules in this process, and Python's orderly
    teardown of them took 0.4 s after the work was done. Every file is written and closed
    by then; only the standard streams and logging are flushed.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # e.g. `groveflow ... | head` closed the pipe
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

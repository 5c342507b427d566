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
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

from groveflow.errors import GroveflowError
from groveflow.follow import Progress, execution_cost, follow, phase_seconds

__all__ = ["main"]

MAP_CHILD_FUNCTIONS = ("BuildGroveFunction", "ScoreShardFunction")


class _ProgressBar:
    """One line on stderr: the Map Run's items done, failed and running, and elapsed time."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        if not self.enabled or not progress.total:
            return
        width = 30
        filled = int(width * progress.succeeded / progress.total)
        line = (
            f"\r{progress.map_label or 'items'} [{'#' * filled}{'.' * (width - filled)}] "
            f"{progress.succeeded}/{progress.total} done, {progress.failed} failed, "
            f"{progress.running} running  {progress.elapsed_seconds:5.1f}s"
        )
        sys.stderr.write(line)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.last is not None and self.last.total:
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


def _record(engine: Any, result: Any, run_id: str, cost: dict[str, Any]) -> None:
    """Keep the run's invocations and cost next to its mirror, for ``groveflow report``."""
    directory = engine.run_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    invocations = [
        {"function": i.function, "duration_ms": i.duration_ms, "memory_mb": i.memory_mb}
        for i in result.invocations
    ]
    record = {"execution_arn": result.execution_arn, "invocations": invocations, "cost": cost}
    (directory / "execution.json").write_text(json.dumps(record, indent=2))


def _model_run_id(request: dict[str, Any]) -> str | None:
    """The local run a prediction input's ``model`` names (a run id or its S3 URI), if any."""
    model = request.get("model")
    if not isinstance(model, str):
        return None
    match = re.fullmatch(r"s3://[^/]+/runs/([^/]+)/.*", model)
    if match:
        return match.group(1)
    return model if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}", model) else None


def _execution_name(run_id: str) -> str:
    return f"{run_id[:60]}-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}"


def _run_locally(
    args: argparse.Namespace, machine: str, request: dict[str, Any], run_id: str
) -> int:
    from groveflow.local.workers import start_fork_server

    start_fork_server()  # its scikit-learn import overlaps the engine's own start
    from groveflow.local import LocalEngine
    from groveflow.local.faults import parse_faults

    try:
        faults = parse_faults(args.inject_faults) if args.inject_faults else None
    except ValueError as error:
        raise SystemExit(f"groveflow: --inject-faults: {error}") from None
    bar = _ProgressBar(enabled=not args.json)
    with LocalEngine(workers=args.workers, state_dir=Path(args.state_dir), faults=faults) as engine:
        model_run = _model_run_id(request) if machine == "PredictStateMachine" else None
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
        _record(engine, result, run_id, summary["cost"])
    _emit(args, summary, machine)
    return 0 if result.status == "SUCCEEDED" else 1


def _emit(args: argparse.Namespace, summary: dict[str, Any], machine: str) -> None:
    if args.json:
        print(json.dumps(summary, indent=2))
    elif machine == "TrainStateMachine":
        _print_summary(summary)
    elif summary["status"] == "SUCCEEDED":
        print(json.dumps(summary["output"], indent=2))
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


def _train(args: argparse.Namespace) -> int:
    request = _read_input(args.input)
    run_id = (
        args.run_id
        or request.get("run_id")
        or f"{Path(args.input).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    request["run_id"] = run_id
    if args.stack or args.state_machine_arn or args.endpoint_url:
        return _run_remote(args, "TrainStateMachine", request, run_id)
    return _run_locally(args, "TrainStateMachine", request, run_id)


def _predict(args: argparse.Namespace) -> int:
    request = _read_input(args.input)
    prediction_id = (
        request.get("prediction_id") or f"{Path(args.input).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    request["prediction_id"] = prediction_id
    if args.stack or args.state_machine_arn or args.endpoint_url:
        return _run_remote(args, "PredictStateMachine", request, prediction_id)
    return _run_locally(args, "PredictStateMachine", request, prediction_id)


def _follow(args: argparse.Namespace) -> int:
    return _follow_remote(args, _sfn_client(args), args.execution_arn, "TrainStateMachine")


def _local_run_dir(args: argparse.Namespace) -> Path:
    from groveflow.layout import keys
    from groveflow.local.engine import mirrored

    run_dir = mirrored(Path(args.state_dir).resolve(), keys.run_prefix(args.run))
    if not (run_dir / "model" / "manifest.json").is_file():
        raise SystemExit(f"groveflow: no finished local run {args.run!r} in {run_dir.parent}")
    return run_dir


def _report(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from groveflow.cost import CostEstimate
    from groveflow.report import write_report

    run_dir = _local_run_dir(args)
    record_path = run_dir / "execution.json"
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
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
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
    from groveflow.local.workers import start_fork_server

    start_fork_server()  # its scikit-learn import overlaps the engine's own start
    from groveflow.local import LocalEngine

    event = Path(args.event).read_bytes()
    with LocalEngine(workers=1, state_dir=Path(args.state_dir)) as engine:
        outcome = engine.invoke(args.function, event)
    print(json.dumps(json.loads(outcome.payload), indent=2))
    return 0 if outcome.error_type is None else 1


def _serve(args: argparse.Namespace) -> int:
    from groveflow.local.workers import start_fork_server

    start_fork_server()  # its scikit-learn import overlaps the engine's own start
    from groveflow.local import LocalEngine

    with LocalEngine(
        workers=args.workers, state_dir=Path(args.state_dir), stack_name="groveflow", port=args.port
    ) as engine:
        print(f"groveflow local endpoint: {engine.endpoint}  (region us-east-1, any credentials)")
        for logical_id in engine.stack.state_machines:
            print(f"  {logical_id}: {engine.state_machine_arn(logical_id)}")
        print(f"  bucket: s3://{engine.bucket}")
        print(f"  runs are mirrored to {engine.state_dir} as they end")
        print("Ctrl-C stops the server.", flush=True)
        try:
            while True:
                engine.wait_for_activity(5.0)
                for run_id in engine.mirror_ended():
                    print(f"ended: {run_id}, mirrored to {engine.run_dir(run_id)}", flush=True)
        except KeyboardInterrupt:
            return 0


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


def _local_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
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
    parser = argparse.ArgumentParser(prog="groveflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

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
    serve.add_argument("--port", type=int, default=8083)
    serve.add_argument("--workers", type=int, default=None)
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

"""The ``groveflow`` command: a thin layer of options over the public API.

``train``, ``predict`` and ``search`` call :func:`groveflow.train`, :func:`groveflow.predict`
and :func:`groveflow.search` on the embedded local engine by default, or on a deployed stack
(``--stack NAME``, ``--state-machine-arn`` or ``--endpoint-url``). ``estimate`` predicts a
training run's wall time and cost without starting it. ``serve`` exposes the local
engine to the AWS CLI and boto3; ``runs``, ``report``, ``export`` and ``delete`` work on the
runs stored in the state directory or a stack (:mod:`groveflow.catalog`); ``invoke``,
``follow`` and ``init`` on functions, executions and the SAM application.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from groveflow import console
from groveflow.errors import GroveflowError

__all__ = ["main"]

DESCRIPTION = """\
Train scikit-learn random forests on AWS Step Functions and Lambda, or on this
machine through an embedded engine that runs the same state machines.

train, predict and search run on the local engine by default, or on a deployed
stack (--stack NAME, --state-machine-arn or --endpoint-url). estimate predicts a
training run's wall time and cost without starting it. serve exposes the local
engine to the AWS CLI and boto3. runs, report, export and delete work on the
runs stored in the state directory or a stack; invoke, follow and init on
functions, executions and the SAM application.

Run `groveflow COMMAND --help` for a command's options."""

OPTIONAL = {"matplotlib": "report", "skops": "export", "pyarrow": "parquet"}


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as Ctrl-C does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _engine(args: argparse.Namespace) -> Any:
    from groveflow.engines import engine_for
    from groveflow.local.faults import parse_faults

    try:
        faults = parse_faults(args.inject_faults) if args.inject_faults else None
    except ValueError as error:
        raise SystemExit(f"groveflow: --inject-faults: {error}") from None
    remote = args.stack or args.state_machine_arn or args.endpoint_url
    return engine_for(
        stack=args.stack,
        state_machine_arn=args.state_machine_arn,
        region=args.region,
        endpoint_url=args.endpoint_url,
        workers=args.workers,
        state_dir=args.state_dir if remote else console.state_dir(args.state_dir),
        faults=faults,
        parameters=_overrides(args.parameter_overrides),
        build_dir=args.build_dir,
    )


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    """``--parameter-overrides Name=Value ...``, as ``sam deploy`` takes them."""
    parsed = {}
    for pair in pairs or []:
        name, sign, value = pair.partition("=")
        if not sign or not name:
            raise SystemExit(f"groveflow: --parameter-overrides: {pair!r} is not Name=Value")
        parsed[name] = value
    return parsed


def _started(execution_arn: str) -> None:
    print(f"started {execution_arn}", file=sys.stderr)


def _input(path: str) -> dict[str, Any]:
    request = console.read_json(path, "input")
    if not isinstance(request, dict):
        raise SystemExit(f"groveflow: {path} must hold a JSON object")
    return request


def _run(args: argparse.Namespace, kind: str) -> int:
    from groveflow import api
    from groveflow.engines import Local, StoppedFollowing

    request = _input(args.input)
    # The id and the request first: a refused one writes nothing, not even the state
    # directory, and no engine starts.
    run_id = api.id_for(request, Path(args.input).stem, args.run_id, predicting=kind == "predict")
    if not (args.stack or args.state_machine_arn or args.endpoint_url):
        # as the API sends it, with its id; a stack's own ValidateRequest checks it there
        _check_request(
            {**request, "prediction_id" if kind == "predict" else "run_id": run_id}, kind
        )
    engine = _engine(args)
    bar = console.ProgressBar(enabled=not args.json)
    started_arns: list[str] = []

    def _on_start(execution_arn: str) -> None:
        started_arns.append(execution_arn)
        _started(execution_arn)

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        call: Any = {"train": api.train, "predict": api.predict, "search": api.search}[kind]
        on_start = None if isinstance(engine, Local) else _on_start
        result = call(request, engine=engine, run_id=run_id, on_progress=bar, on_start=on_start)
    except StoppedFollowing as stopped:
        bar.finish()
        console.stopped_following(stopped.execution_arn)
        return 130
    except KeyboardInterrupt as interrupt:
        bar.finish()
        if started_arns:  # Ctrl-C between the start and following: the execution goes on
            console.stopped_following(started_arns[-1])
            return 143 if isinstance(interrupt, _Terminated) else 130
        run_flag = "" if kind == "predict" else f" --run-id {run_id}"
        console.interrupted(f"{args.command} {args.input}{run_flag}", run_id, args.state_dir)
        return 143 if isinstance(interrupt, _Terminated) else 130
    finally:
        if isinstance(engine, Local):
            with contextlib.suppress(Exception):  # stopping: what is stored is stored
                engine.close()
    bar.finish()
    if kind == "search":
        console.emit_search(result, args.json)
    else:
        console.emit(result, args.json)
    return 0 if result.succeeded else 1


def _check_request(request: dict[str, Any], kind: str) -> None:
    """Refuse a request as the state machine's ValidateRequest step would
    (:func:`groveflow.ingest.check_before_ingest`: InvalidRequest or InvalidPredictRequest
    naming the key or value).

    A training input's own keys (a search's, its search section aside) are checked first
    by the training request's parse, as that check does, before it imports the prediction
    and search modules (scikit-learn: a second or more): a typo there is refused at once.
    (A run imports them anyway.)
    """
    from groveflow.ingest import check_before_ingest
    from groveflow.request import parse_train_request

    if kind != "predict":
        parse_train_request({k: v for k, v in request.items() if k != "search"})
    check_before_ingest({"request": request, "kind": kind})


def _estimate(args: argparse.Namespace) -> int:
    from groveflow import api

    request = _input(args.input)
    estimate = api.estimate(
        request,
        workers=args.workers,
        builder_memory_mb=args.builder_memory_mb,
        plan_memory_mb=args.plan_memory_mb,
    )
    console.emit_estimate(estimate, args.json)
    return 0


def _follow(args: argparse.Namespace) -> int:
    from groveflow.api import result_of
    from groveflow.engines import Stack

    stack = Stack(region=args.region, endpoint_url=args.endpoint_url)
    bar = console.ProgressBar(enabled=not args.json)
    execution = stack.wait(args.execution_arn, bar)
    bar.finish()
    result = result_of("train", execution.output.get("run_id") or "", execution)
    console.emit(result, args.json)
    return 0 if result.succeeded else 1


def _place(args: argparse.Namespace) -> Any:
    """Where ``runs``, ``report``, ``export`` and ``delete`` look: a stack's bucket
    (``--stack`` or ``--endpoint-url``), else the local state directory."""
    from groveflow.catalog import BucketPlace, DirPlace
    from groveflow.engines import Stack

    if args.stack or args.endpoint_url:
        return BucketPlace(Stack(args.stack, region=args.region, endpoint_url=args.endpoint_url))
    return DirPlace(Path(args.state_dir))


def _runs(args: argparse.Namespace) -> int:
    from groveflow.catalog import list_entries

    place = _place(args)
    console.emit_entries(list_entries(place), place.where, args.json)
    return 0


def _report(args: argparse.Namespace) -> int:
    from groveflow.catalog import write_run_report

    print(write_run_report(_place(args), args.run, Path(args.out) if args.out else None))
    return 0


def _export(args: argparse.Namespace) -> int:
    from groveflow.catalog import export_run

    out = Path(args.out) if args.out else None
    print(export_run(_place(args), args.run, args.format, out))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from groveflow.catalog import plan_deletion, remove

    place = _place(args)
    deletion = plan_deletion(place, args.run, args.kind)
    if not args.yes and not console.confirm(f"delete {deletion.describe()} from {place.where}?"):
        print("nothing deleted", file=sys.stderr)
        return 1
    remove(place, deletion)
    print(f"deleted {deletion.describe()} from {place.where}")
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from groveflow.local_commands import invoke_one

    event = console.read_json(args.event, "event")
    state_dir = console.state_dir(args.state_dir)
    result, ok = invoke_one(args.function, event, state_dir, build_dir=_build_dir(args))
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


def _serve(args: argparse.Namespace) -> int:
    from groveflow.local_commands import serve_forever

    state_dir = console.state_dir(args.state_dir)
    signal.signal(signal.SIGTERM, _on_sigterm)
    serve_forever(state_dir, args.port, args.workers, build_dir=_build_dir(args))
    return 0


def _build_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.build_dir) if args.build_dir else None


def _init(args: argparse.Namespace) -> int:
    from groveflow.application import write_application

    print(f"the groveflow SAM application is in {write_application(Path(args.directory))}")
    print("next: cd there, then `make sam-venv validate build` and `make deploy` (docs/deploy.md)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text!r}")
    return value


class _Help(argparse.HelpFormatter):
    """Help text with each option's default, where it has one to show; file names and
    options (``events/train-digits.json``) are not broken at their hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the problem."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


STATE_DIR_HELP = "the local engine's state directory: its bucket's mirror and run records"
WORKERS_HELP = "worker processes of the local engine (default: one per core)"


def _command(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
    return parser


def _add_build_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build-dir",
        default=None,
        metavar="DIR",
        help="local engine only: run the functions as `sam build` built them in DIR, e.g. "
        ".aws-sam/build: on python3.12 with only their code and layers (default: this "
        "environment's groveflow)",
    )


def _run_parser(commands: Any, name: str, text: str, example: str) -> argparse.ArgumentParser:
    parser = _command(commands, name, text)
    parser.add_argument("input", help=f"execution input JSON file, e.g. {example}")
    parser.add_argument("--workers", type=_positive_int, default=None, help=WORKERS_HELP)
    parser.add_argument("--state-dir", default=".groveflow", help=STATE_DIR_HELP)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--inject-faults",
        default=None,
        metavar="SPEC",
        help="local engine only: make invocations fail at random, e.g. "
        "throttle=0.2,crash=0.05,timeout=0.02,seed=7 (default: none)",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        metavar="NAME=VALUE",
        help="local engine only: template parameters, e.g. BuilderMemorySize=512 "
        "(default: template.yaml's)",
    )
    _add_build_dir(parser)
    parser.add_argument(
        "--stack", help="run on this deployed CloudFormation stack (default: the local engine)"
    )
    parser.add_argument(
        "--state-machine-arn", help="run on this deployed state machine (default: the local engine)"
    )
    parser.add_argument(
        "--region", default=None, help="AWS region of the stack (default: the AWS configuration's)"
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="Step Functions endpoint, e.g. a warm `groveflow serve`'s http://localhost:8083",
    )
    return parser


def _stored_parser(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A command on stored runs: in the state directory, or a stack's with ``--stack`` or
    ``--endpoint-url``."""
    parser = _command(commands, name, text)
    parser.add_argument("--state-dir", default=".groveflow", help=STATE_DIR_HELP)
    parser.add_argument("--stack", help="a deployed stack's runs instead (default: none)")
    parser.add_argument(
        "--region", default=None, help="AWS region of the stack (default: the AWS configuration's)"
    )
    parser.add_argument(
        "--endpoint-url", default=None, help="a `groveflow serve`'s runs instead, by its URL"
    )
    return parser


def _add_training(commands: Any) -> None:
    train = _run_parser(commands, "train", "train a forest", "events/train-digits.json")
    train.add_argument(
        "--run-id",
        default=None,
        help="names the run; the same id and input again resumes it "
        "(default: the input's run_id, else the file's name and the time)",
    )
    train.set_defaults(func=lambda args: _run(args, "train"))
    predict = _run_parser(commands, "predict", "score rows", "events/predict-digits.json")
    predict.set_defaults(func=lambda args: _run(args, "predict"), run_id=None)
    searching = _run_parser(commands, "search", "search hyperparameters", "search.json")
    searching.add_argument(
        "--run-id", default=None, help="the search id (default: the input's run_id)"
    )
    searching.set_defaults(func=lambda args: _run(args, "search"))
    estimate = _command(
        commands, "estimate", "predict a training run's wall time and cost, without running it"
    )
    estimate.add_argument("input", help="execution input JSON file, e.g. events/train-digits.json")
    estimate.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes of the local engine to estimate for (default: one per core)",
    )
    estimate.add_argument(
        "--builder-memory-mb",
        type=_positive_int,
        default=None,
        help="BuilderMemorySize (default: template.yaml's, as the local engine's)",
    )
    estimate.add_argument(
        "--plan-memory-mb", type=_positive_int, default=3008, help="PlanMemorySize"
    )
    estimate.add_argument("--json", action="store_true", help="print the estimate as JSON")
    estimate.set_defaults(func=_estimate)


def _add_stored(commands: Any) -> None:
    listing = _stored_parser(commands, "runs", "list runs, searches and predictions, newest first")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(func=_runs)
    for name, func, text in (
        ("report", _report, "write an HTML report of a run (a search's: its winner's)"),
        ("export", _export, "write a run's model as a scikit-learn file"),
        ("delete", _delete, "delete every object of a run, search or prediction"),
    ):
        command = _stored_parser(commands, name, text)
        command.add_argument("run", help="run id (search id, prediction id)")
        command.set_defaults(func=func)
        if name == "delete":
            command.add_argument("--yes", action="store_true", help="do not ask first")
            command.add_argument(
                "--kind",
                choices=("train", "search", "predict"),
                default=None,
                help="which of a run and a prediction of this id to delete, as `groveflow "
                "runs` shows its KIND (default: the run or search if there is one, else the "
                "prediction)",
            )
            continue
        where = "RUN-report/ here" if name == "report" else "RUN.FORMAT here"
        command.add_argument("--out", default=None, help=f"where to write it (default: {where})")
        if name == "export":
            command.add_argument(
                "--format", choices=("joblib", "skops"), default="joblib", help="the file's format"
            )


def _add_engine(commands: Any) -> None:
    follow = _command(commands, "follow", "follow an execution on AWS or groveflow serve")
    follow.add_argument("execution_arn", help="the execution's ARN, as `started` printed it")
    follow.add_argument(
        "--region", default=None, help="AWS region (default: the AWS configuration's)"
    )
    follow.add_argument(
        "--endpoint-url", default=None, help="Step Functions endpoint, e.g. `groveflow serve`'s"
    )
    follow.add_argument("--json", action="store_true", help="print the summary as JSON")
    follow.set_defaults(func=_follow)
    invoke = _command(commands, "invoke", "run one function's handler on an event")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. PlanFunction")
    invoke.add_argument("event", help="event JSON file (what the state machine passes it)")
    invoke.add_argument("--state-dir", default=".groveflow", help=STATE_DIR_HELP)
    _add_build_dir(invoke)
    invoke.set_defaults(func=_invoke)
    serve = _command(commands, "serve", "serve the local engine to the AWS CLI and boto3")
    serve.add_argument("--port", type=_port, default=8083, help="the port to listen on")
    serve.add_argument("--workers", type=_positive_int, default=None, help=WORKERS_HELP)
    serve.add_argument("--state-dir", default=".groveflow", help=STATE_DIR_HELP)
    _add_build_dir(serve)
    serve.set_defaults(func=_serve)
    init = _command(commands, "init", "write the deployable SAM application to DIRECTORY")
    init.add_argument("directory", help="where to write it (created if needed)")
    init.set_defaults(func=_init)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="groveflow",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND", help="one of:"
    )
    _add_training(commands)
    _add_stored(commands)
    _add_engine(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``groveflow`` command."""
    from groveflow.engines import EngineError

    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except EngineError as error:
        print(f"groveflow: {error}", file=sys.stderr)
        return 2
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
    by then; only the standard streams and logging are flushed. Output to a pipe closed
    early (``groveflow train ... | head -1``) ends quietly, as a command killed by SIGPIPE
    does (exit code 141): the run itself has ended, and what it stored is stored.
    """
    try:
        code = main()
    except BrokenPipeError:
        if not _closed_pipe():
            raise
        code = 128 + signal.SIGPIPE
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # e.g. `groveflow ... | head` closed the pipe
            stream.flush()
    os._exit(code)


def _closed_pipe() -> bool:
    """Whether stdout or stderr is a pipe whose reader has gone."""
    import select

    poller = select.poll()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            poller.register(stream.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


if __name__ == "__main__":
    run()

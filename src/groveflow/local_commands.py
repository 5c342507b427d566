"""The ``serve`` and ``invoke`` commands over the local engine: what they print, and their
refusals as the CLI's exits.

Part of the command line, not of the engine: :mod:`groveflow.local` imports nothing of the CLI
(the fork server's start, the catalog's serving mark); the engine and the server are imported
where a command runs, for the CLI's start-up time."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["invoke_one", "serve_forever"]


def invoke_one(
    function: str, event: Any, state_dir: Path, build_dir: Path | None = None
) -> tuple[Any, bool]:
    """Run one template function's handler on ``event``: its result (or Lambda's error
    document) and whether it succeeded; as built in ``build_dir`` if given (what ``sam local
    invoke`` runs, without Docker). An unknown function, or a build that cannot run here, is
    refused before any work."""
    from groveflow.engines import start_workers
    from groveflow.local.engine import project_root
    from groveflow.local.template import BuildError, load_build, load_template

    try:
        if build_dir is None:
            functions = load_template(project_root(), bucket="groveflow-local").functions
        else:
            functions = load_build(build_dir, bucket="groveflow-local").functions
    except BuildError as error:
        raise SystemExit(f"groveflow: {error}") from None
    if function not in functions:
        raise SystemExit(
            f"groveflow: no function {function!r} in template.yaml; "
            f"accepted: {', '.join(sorted(functions))}"
        )
    if build_dir is None:
        start_workers()
    from groveflow.local import LocalEngine

    try:
        engine = LocalEngine(workers=1, state_dir=state_dir, build_dir=build_dir)
    except BuildError as error:
        raise SystemExit(f"groveflow: {error}") from None
    with engine:
        outcome = engine.invoke(function, json.dumps(event).encode())
    return json.loads(outcome.payload), outcome.error_type is None


def serve_forever(
    state_dir: Path, port: int, workers: int | None, build_dir: Path | None = None
) -> None:
    """Serve the local engine on ``port`` until Ctrl-C (or SIGTERM), printing what ends; its
    functions as built in ``build_dir`` if given."""
    from groveflow.catalog import serving_mark
    from groveflow.engines import start_workers
    from groveflow.local.server import Server, port_is_free
    from groveflow.local.template import BuildError

    if not port_is_free(port):  # a taken port is one line, before any work
        raise SystemExit(f"groveflow: --port {port} is not free")
    if build_dir is None:
        start_workers()
    from groveflow.local import LocalEngine

    Server.hold_clients()  # other clients wait until the state machines exist
    try:
        try:
            engine = LocalEngine(
                workers=workers,
                state_dir=state_dir,
                stack_name="groveflow",
                port=port,
                serve=True,
                build_dir=build_dir,
            )
        except BuildError as error:
            raise SystemExit(f"groveflow: {error}") from None
        with engine, serving_mark(engine.state_dir, engine.endpoint):  # deletes go through it
            machines = {
                name: engine.state_machine_arn(name) for name in engine.stack.state_machines
            }
            Server.release_clients()
            print(
                f"groveflow local endpoint: {engine.endpoint}  (region us-east-1, any credentials)"
            )
            if build_dir is not None:
                print(f"  functions as built in {engine.build_dir} ({engine.pool.python})")
            for logical_id, arn in machines.items():
                print(f"  {logical_id}: {arn}")
            print(f"  bucket: s3://{engine.bucket}")
            print(f"  runs and predictions are mirrored to {engine.state_dir} as they are stored")
            print("Ctrl-C stops the server.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    engine.wait_for_activity(5.0)
                    _print_ended(engine)
    finally:
        Server.release_clients()


def _print_ended(engine: Any) -> None:
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

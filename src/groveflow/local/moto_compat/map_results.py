"""A Distributed Map's result as AWS gives it: each failed child whole, and ``ResultWriter``'s
files by status beside their manifest."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "kept_children",
    "return_failed_children_whole",
    "write_map_results_as_aws_does",
]


def return_failed_children_whole() -> None:
    """Wrap ``DistributedItemProcessorWorker._eval_job`` and ``_map_run`` to keep AWS's records.

    moto keeps a failed child's result as ``null``. AWS returns each failed child whole
    in the Map's result (its ARN, name, input, error, cause, dates: about 1 KB), which is
    what makes a Map without a ``ResultWriter`` pass the payload quota when many children
    fail within the tolerance. Each child's record, as ``ResultWriter`` writes it, is kept
    on its Map Run (``_groveflow_children``, by item index); a failed child's replaces its
    ``null`` in the result.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E501
        distributed_item_processor_worker as processor_worker,
    )

    worker_cls = processor_worker.DistributedItemProcessorWorker
    eval_job = worker_cls._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        started = _now()
        eval_job(self, env, job)
        record = self._map_run_record
        children = record.__dict__.setdefault("_groveflow_children", {})
        children[job.job_index] = _child_record(record, job, env.program_state(), started)

    worker_cls._eval_job = _eval_job  # type: ignore[method-assign]

    map_cls = component.DistributedIterationComponent
    map_run = map_cls._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        map_run(self, env, eval_input)
        outputs = env.stack[-1]
        for index, child in kept_children(eval_input.map_run_record).items():
            if child["Status"] != "SUCCEEDED" and index < len(outputs):
                outputs[index] = child

    map_cls._map_run = _map_run  # type: ignore[method-assign]


def _now() -> str:
    import datetime

    now = datetime.datetime.now(tz=datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def kept_children(map_run_record: Any) -> dict[int, dict[str, Any]]:
    children: dict[int, dict[str, Any]] = map_run_record.__dict__.get("_groveflow_children", {})
    return children


def _child_record(map_run_record: Any, job: Any, state: Any, started: str) -> dict[str, Any]:
    """One child execution as AWS records it in a Map's result and in ResultWriter's files."""
    import uuid

    from moto.stepfunctions.parser.asl.eval.program_state import (
        ProgramEnded,
        ProgramError,
        ProgramStopped,
        ProgramTimedOut,
    )

    name = str(uuid.uuid4())
    head = map_run_record.map_run_arn.replace(":mapRun:", ":execution:").rsplit(":", 1)[0]
    record: dict[str, Any] = {
        "ExecutionArn": f"{head}:{name}",
        "Input": json.dumps(job.job_input, separators=(",", ":")),
        "InputDetails": {"Included": True},
        "Name": name,
        "StartDate": started,
        "StateMachineArn": map_run_record.map_state_machine_arn,
        "StopDate": _now(),
        "RedriveCount": 0,
    }
    if isinstance(state, ProgramEnded):
        record["Status"] = "SUCCEEDED"
        record["Output"] = json.dumps(job.job_output, separators=(",", ":"))
        record["OutputDetails"] = {"Included": True}
        record["RedriveStatus"] = "NOT_REDRIVABLE"
        record["RedriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
        return record
    error: dict[str, Any] = {}
    if isinstance(state, ProgramError):
        error = dict(state.error or {})
    elif isinstance(state, ProgramStopped):
        error = {"error": state.error, "cause": state.cause}
    record["Status"] = (
        "TIMED_OUT"
        if isinstance(state, ProgramTimedOut)
        else "ABORTED"
        if isinstance(state, ProgramStopped)
        else "FAILED"
    )
    record["Error"] = error.get("error") or "States.Runtime"
    record["Cause"] = error.get("cause") or ""
    record["RedriveStatus"] = "REDRIVABLE"
    return record


def write_map_results_as_aws_does() -> None:
    """Replace ``ResultWriter._eval_body`` and ``ResourceEvalS3._handle_put_object``.

    moto evaluates ResultWriter's ``Parameters`` paths against the Map's result (the
    children's outputs); AWS evaluates them against the state's input, as every other
    field (``"Bucket.$": "$.plan.bucket"``). moto writes
    ``<Prefix>/<map run id>/manifest.json`` with empty ``ResultFiles`` and no results.
    AWS writes each status's children to ``SUCCEEDED_0.json``,
    ``FAILED_0.json`` (failed, timed out and aborted children) and ``PENDING_0.json``
    beside the manifest, lists them in it with their sizes, and the Map's result becomes
    ``{"MapRunArn": ..., "ResultWriterDetails": {"Bucket": ..., "Key": <manifest>}}``.
    Each file is a JSON array of the records :func:`return_failed_children_whole` keeps,
    in item order; only statuses with children get a file.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (  # noqa: E501
        ResultWriter,
    )

    ResultWriter._eval_body = _eval_result_writer_body  # type: ignore[method-assign]
    ResourceEvalS3._handle_put_object = staticmethod(_put_map_run_results)  # type: ignore[method-assign]


def _eval_result_writer_body(self: Any, env: Any) -> None:
    """``ResultWriter._eval_body`` with its ``Parameters`` evaluated on the state's input."""
    result = env.stack.pop()
    env.stack.append(env.states.get_input())
    self.parargs.eval(env=env)
    parameters = env.stack.pop()
    env.stack.pop()  # the state's input
    env.stack.extend((result, parameters))  # as the resource expects them
    self.resource_eval.eval_resource(env=env)


def _put_map_run_results(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """``ResourceEvalS3._handle_put_object``: the Map Run's records by status, then the
    manifest listing them; the Map's result names the manifest."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )

    parameters = env.stack.pop()
    env.stack.pop()  # the Map's result: the Map Run's full records are written instead
    s3 = ResourceEvalS3._get_s3_client(
        resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
    )
    record = env.map_run_record_pool_manager.get_all()[-1]
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    directory = f"{prefix}{record.map_run_arn.rsplit(':', 1)[-1]}/"
    manifest = {
        "DestinationBucket": bucket,
        "MapRunArn": record.map_run_arn,
        "ResultFiles": _put_result_files(s3, bucket, directory, kept_children(record)),
    }
    key = f"{directory}manifest.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    env.stack.append(
        {"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}}
    )


def _put_result_files(
    s3: Any, bucket: str, directory: str, children: dict[int, dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Write the children's records by status (``SUCCEEDED_0.json``, ``FAILED_0.json``), in
    item order; the manifest's ``ResultFiles``, with each file's key and size."""
    by_status: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for _, child in sorted(children.items()):
        by_status["SUCCEEDED" if child["Status"] == "SUCCEEDED" else "FAILED"].append(child)
    files: dict[str, list[dict[str, Any]]] = {status: [] for status in by_status}
    for status, records in by_status.items():
        if records:
            body = json.dumps(records).encode()
            key = f"{directory}{status}_0.json"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            files[status].append({"Key": key, "Size": len(body)})
    return files

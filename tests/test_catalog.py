"""Stored runs as a user manages them: ``groveflow runs``, ``report``, ``export`` and
``delete`` against ``groveflow serve`` used as a stack (``--endpoint-url``, on a versioned
bucket) and against a local state directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import test_cli
from conftest import ROOT
from groveflow.layout import keys
from groveflow.local.engine import LOCAL_BUCKET, execution_record, mirrored
from groveflow.local.faults import FaultInjector
from test_cli import GROVEFLOW, Served, _files, _groveflow, _served_sfn, _serving

IRIS = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2}
HOLDING = """
import os
import sys
import time
from pathlib import Path

import groveflow.local
from groveflow.local.faults import FaultInjector

HELD = Path(os.environ["GROVEFLOW_TEST_HELD"])


class Held(FaultInjector):
    def decide(self, function, payload, attempt):
        first = (payload.get("run_id"), payload.get("grove"), attempt) == ("busy", 0, 1)
        if function == "BuildGroveFunction" and first:
            (HELD / "held").touch()
            while not (HELD / "released").exists():
                time.sleep(0.05)
        return None


class HeldEngine(groveflow.local.LocalEngine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "faults": Held()})


groveflow.local.LocalEngine = HeldEngine
from groveflow.cli import main

sys.exit(main(sys.argv[1:]))
"""
"""``python -c HOLDING ARGS`` is ``groveflow ARGS`` whose engine holds run busy at the first
attempt of its first grove until the file ``released`` is in the directory named by
``GROVEFLOW_TEST_HELD``, having put a file ``held`` there: a run kept running by an event,
however fast or loaded the machine."""


def _holding(held: Path) -> dict[str, str]:
    """The environment of a ``HOLDING`` process whose hold is ``held`` (a directory)."""
    return {**os.environ, "GROVEFLOW_TEST_HELD": str(held)}


@dataclass(frozen=True)
class Held(FaultInjector):
    """Holds run busy at the first attempt of its first grove until ``released`` is set,
    having set ``reached`` (for an engine in this process)."""

    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> None:
        first = (payload.get("run_id"), payload.get("grove"), attempt) == ("busy", 0, 1)
        if function == "BuildGroveFunction" and first:
            self.reached.set()
            self.released.wait()


WINE_SEARCH = {
    "data": {"uri": "sklearn:wine"},
    "n_trees": 10,
    "grove_size": 5,
    "seed": 11,
    "search": {
        "space": {"min_samples_leaf": [1, 4]},
        "strategy": "grid",
        "metric": "oob",
        "trees_per_round": 5,
    },
}
SEPARATE_LOG_WINDOWS_SECONDS = 1.1
"""A stack's cost reads REPORT lines up to 1 s after an execution ends (see
``follow.execution_cost``): runs started further apart are priced on their own lines."""


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def _write(tmp_path: Path, name: str, request: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(request))
    return path


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _summary(*args: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(_ok(_groveflow(*args, "--json")))
    assert summary["status"] == "SUCCEEDED", summary
    return summary


def _listed(*place: str) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in json.loads(_ok(_groveflow("runs", *place, "--json")))}


def _assert_listed_as_summarised(entry: dict[str, Any], summary: dict[str, Any]) -> None:
    assert entry["status"] == "SUCCEEDED"
    assert entry["trees"] == summary["trees_built"]
    assert (entry["metric"], entry["value"]) == ("accuracy", summary["metrics"]["accuracy"])
    assert entry["cost_usd"] == summary["cost"]["total_usd"]


def _versions(s3: Any, prefix: str) -> dict[tuple[str, str], str]:
    """Every version (and delete marker) under ``prefix`` -> the sha256 of its bytes."""
    found = {}
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=LOCAL_BUCKET, Prefix=prefix
    ):
        for item in page.get("Versions", []):
            body = s3.get_object(Bucket=LOCAL_BUCKET, Key=item["Key"], VersionId=item["VersionId"])
            found[item["Key"], item["VersionId"]] = hashlib.sha256(body["Body"].read()).hexdigest()
        for item in page.get("DeleteMarkers", []):
            found[item["Key"], item["VersionId"]] = "delete marker"
    return found


@pytest.fixture(scope="module")
def stack_held(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's hold of run busy (see ``HOLDING``)."""
    return tmp_path_factory.mktemp("held")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_held: Path) -> Iterator[Served]:
    """``groveflow serve`` with its bucket versioned, as a deployed stack's is, holding run
    busy at its first grove until released (``HOLDING``)."""
    with contextlib.ExitStack() as serving:
        with (
            mock.patch.object(test_cli, "GROVEFLOW", [sys.executable, "-c", HOLDING]),
            mock.patch.dict(os.environ, _holding(stack_held)),
        ):
            served = serving.enter_context(_serving(tmp_path_factory.mktemp("stack")))
        _s3(served.endpoint).put_bucket_versioning(
            Bucket=LOCAL_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        yield served


def _wait(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.2)


# --------------------------------------------------------------------------- on a stack


def _delete_answering(answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``groveflow delete ARGS``, answering its question with ``answer``."""
    return subprocess.run(
        [*GROVEFLOW, "delete", *args],
        input=f"{answer}\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _assert_reported_and_exported(endpoint: str, summary: dict[str, Any], out: Path) -> None:
    """The stack's run is reported (plots, and its summary's cost) and exported (predicting as
    the stack's model) from here."""
    import joblib
    from sklearn.datasets import load_iris

    from groveflow.artifact import load_forest
    from groveflow.engines import Stack

    flags = ["--endpoint-url", endpoint]
    run_id = summary["run_id"]
    report = Path(_ok(_groveflow("report", run_id, *flags, "--out", str(out / "report"))))
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert f'id="cost-total" data-value="{summary["cost"]["total_usd"]!r}"' in page
    exported = out / f"{run_id}.joblib"
    _ok(_groveflow("export", run_id, *flags, "--out", str(exported)))
    X, _ = load_iris(return_X_y=True)
    downloaded = Stack(endpoint_url=endpoint).model_path(summary["model_uri"])
    try:
        stored = load_forest(downloaded)
    finally:
        shutil.rmtree(downloaded)  # a temporary directory of the stack's model
    assert (joblib.load(exported).predict_proba(X) == stored.predict_proba(X)).all()


def test_a_stacks_runs_are_listed_reported_exported_and_deleted(
    stack: Served, tmp_path: Path
) -> None:
    endpoint = ["--endpoint-url", stack.endpoint]
    s3 = _s3(stack.endpoint)
    request = _write(tmp_path, "iris", IRIS)
    # GIVEN two runs and a prediction on the stack
    first = _summary("train", str(request), "--run-id", "doomed", *endpoint)
    time.sleep(SEPARATE_LOG_WINDOWS_SECONDS)
    second = _summary("train", str(request), "--run-id", "kept", *endpoint)
    time.sleep(SEPARATE_LOG_WINDOWS_SECONDS)
    scoring = {"model": "doomed", "data": {"uri": "sklearn:iris"}, "prediction_id": "scored"}
    _summary("predict", str(_write(tmp_path, "scoring", scoring)), *endpoint)
    # ... and the doomed run's manifest overwritten (two versions) and a file deleted (a marker)
    manifest = s3.get_object(Bucket=LOCAL_BUCKET, Key=keys.manifest("doomed"))["Body"].read()
    s3.put_object(Bucket=LOCAL_BUCKET, Key=keys.manifest("doomed"), Body=manifest)
    s3.put_object(Bucket=LOCAL_BUCKET, Key="runs/doomed/notes.txt", Body=b"scratch")
    s3.delete_object(Bucket=LOCAL_BUCKET, Key="runs/doomed/notes.txt")
    assert len(_versions(s3, "runs/doomed/")) > len(
        s3.list_objects_v2(Bucket=LOCAL_BUCKET, Prefix="runs/doomed/")["Contents"]
    )

    # WHEN they are listed
    listed = _listed(*endpoint)
    # THEN newest first, each with the figures its summary gave
    assert [i for i in listed if i in ("doomed", "kept", "scored")] == ["scored", "kept", "doomed"]
    _assert_listed_as_summarised(listed["doomed"], first)
    _assert_listed_as_summarised(listed["kept"], second)
    assert (listed["scored"]["kind"], listed["scored"]["metric"]) == ("predict", "rows")
    assert (listed["scored"]["value"], listed["scored"]["model_run"]) == (150, "doomed")
    text = _ok(_groveflow("runs", *endpoint)).splitlines()
    assert text[0].split() == ["ID", "KIND", "STATUS", "TREES", "METRIC", "COST", "USD", "CREATED"]

    # WHEN the stack's run is reported and exported from here
    # THEN the report has its plots and the export predicts as the stack's model
    _assert_reported_and_exported(stack.endpoint, first, tmp_path)

    # WHEN a delete is not confirmed
    kept_before = _versions(s3, "runs/kept/")
    scored_before = _versions(s3, "predictions/scored/")
    refused = _delete_answering("n", "doomed", *endpoint)
    # THEN nothing goes
    assert refused.returncode == 1
    assert "delete run doomed (" in refused.stderr
    assert _versions(s3, "runs/doomed/")
    # WHEN it is deleted with --yes
    deleted = _ok(_groveflow("delete", "doomed", "--yes", *endpoint))
    # THEN no version and no delete marker of the run remains, on the bucket or its mirror
    assert deleted.startswith("deleted run doomed (")
    assert _versions(s3, "runs/doomed/") == {}
    mirror = mirrored(stack.state_dir, keys.run_prefix("doomed"))
    assert not mirror.exists() or _files(mirror) == {}
    # ... and the other run and the prediction are byte for byte as they were
    assert _versions(s3, "runs/kept/") == kept_before
    assert _versions(s3, "predictions/scored/") == scored_before
    assert "doomed" not in _listed(*endpoint)
    # ... and deleting it again says there is no such run
    again = _groveflow("delete", "doomed", "--yes", *endpoint)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"groveflow: NoSuchRun: no run, search or prediction 'doomed' in s3://{LOCAL_BUCKET}"
    )
    stack.assert_up()


def test_a_running_run_on_a_stack_is_not_deleted(stack: Served, stack_held: Path) -> None:
    # GIVEN a run started on the stack, held running at its first grove
    s3, sfn = _s3(stack.endpoint), _served_sfn(stack.endpoint)
    machine = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"].endswith("-TrainStateMachine")
    )
    arn = sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({**IRIS, "run_id": "busy"})
    )["executionArn"]
    try:
        _wait((stack_held / "held").exists, "the run held")
        # WHEN it is deleted
        done = _groveflow("delete", "busy", "--yes", "--endpoint-url", stack.endpoint)
        # THEN the delete is refused by name, naming the execution, and nothing goes
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        assert done.returncode == 2
        assert done.stderr.startswith(
            f"groveflow: RunIsRunning: busy has a running execution ({arn})"
        )
        assert s3.head_object(Bucket=LOCAL_BUCKET, Key=keys.request("busy"))
        assert _listed("--endpoint-url", stack.endpoint)["busy"]["status"] == "RUNNING"
    finally:
        (stack_held / "released").touch()
    # ... and once the execution has ended it can be deleted
    _wait(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", "the run", 600)
    _ok(_groveflow("delete", "busy", "--yes", "--endpoint-url", stack.endpoint))
    assert _versions(s3, "runs/busy/") == {}


def _keys_of(keys: Iterable[str], ids: list[str]) -> set[str]:
    """The keys with one of ``ids`` as a whole path segment (``abc`` is not ``abc-2``)."""
    return {key for key in keys if any(f"/{i}/" in f"/{key}" for i in ids)}


def test_a_deleted_run_leaves_no_map_results_behind(stack: Served, tmp_path: Path) -> None:
    # After the test of a running run: the runs this adds would make that listing slower
    endpoint = ["--endpoint-url", stack.endpoint]
    s3 = _s3(stack.endpoint)
    # GIVEN a run, a search and a prediction, each with a neighbour whose id extends theirs
    iris = _write(tmp_path, "iris", IRIS)
    for run_id in ("wm", "wm-2"):
        _summary("train", str(iris), "--run-id", run_id, *endpoint)
    search = {**WINE_SEARCH, "run_id": "ws"}
    winner = _summary("search", str(_write(tmp_path, "search", search)), *endpoint)["run_id"]
    _summary("train", str(iris), "--run-id", "ws-2", *endpoint)
    for prediction_id in ("wp", "wp-2"):
        scoring = {"model": "wm-2", "data": {"uri": "sklearn:iris"}, "prediction_id": prediction_id}
        _summary("predict", str(_write(tmp_path, prediction_id, scoring)), *endpoint)
    doomed = ["wm", "ws", "ws-c000", "ws-c001", "wp"]
    neighbours = ["wm-2", "ws-2", "wp-2"]
    assert winner in doomed
    before = _versions(s3, "")
    # ... whose Maps stored result files under map-results/ (else this test proves nothing)
    for prefix in ("runs/wm/", "runs/wm-2/", "runs/ws/", "predictions/wp/", "predictions/wp-2/"):
        assert any(key.startswith(f"map-results/{prefix}") for key, _ in before), prefix
    # WHEN the run, the search and the prediction are deleted
    for deleted in ("wm", "ws", "wp"):
        _ok(_groveflow("delete", deleted, "--yes", *endpoint))
    # THEN no version of any of their keys remains anywhere in the bucket, nor in its mirror
    after = _versions(s3, "")
    assert _keys_of((key for key, _ in after), doomed) == set()
    assert _keys_of(_files(stack.state_dir / "s3" / LOCAL_BUCKET), doomed) == set()
    # ... and every other version, the neighbours' map results included, is as it was
    gone = _keys_of((key for key, _ in before), doomed)
    assert after == {version: sha for version, sha in before.items() if version[0] not in gone}
    assert _keys_of((key for key, _ in after), neighbours) == _keys_of(
        (key for key, _ in before), neighbours
    )
    stack.assert_up()


# --------------------------------------------------------------------- a state directory


def test_a_state_directorys_runs_are_listed_reported_exported_and_deleted(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    request = _write(tmp_path, "iris", IRIS)
    # GIVEN two local runs and a prediction with the first one's model
    first = _summary("train", str(request), "--run-id", "doomed", *local)
    second = _summary("train", str(request), "--run-id", "kept", *local)
    scoring = {"model": "doomed", "data": {"uri": "sklearn:iris"}, "prediction_id": "scored"}
    _summary("predict", str(_write(tmp_path, "scoring", scoring)), *local)
    # WHEN they are listed
    listed = _listed(*local)
    # THEN newest first, each with the figures its summary gave
    assert list(listed) == ["scored", "kept", "doomed"]
    _assert_listed_as_summarised(listed["doomed"], first)
    _assert_listed_as_summarised(listed["kept"], second)
    # ... and the report and export work as before
    assert Path(_ok(_groveflow("report", "doomed", *local, cwd=tmp_path))).is_file()
    exported = tmp_path / "doomed.skops"
    _ok(_groveflow("export", "doomed", *local, "--format", "skops", "--out", str(exported)))
    assert exported.stat().st_size > 0
    # WHEN the first run is deleted
    kept = _files(mirrored(state, keys.run_prefix("kept")))
    scored = _files(mirrored(state, keys.predictions_prefix("scored")))
    confirmed = _delete_answering("y", "doomed", *local)
    # THEN it asked, and none of its files remains, its execution record neither
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stderr.startswith("delete run doomed (")
    assert not mirrored(state, keys.run_prefix("doomed")).exists()
    assert not execution_record(state, run_id="doomed").exists()
    # ... and the other run's and the prediction's files are byte for byte as they were
    assert _files(mirrored(state, keys.run_prefix("kept"))) == kept
    assert _files(mirrored(state, keys.predictions_prefix("scored"))) == scored
    assert list(_listed(*local)) == ["scored", "kept"]


def test_a_running_local_run_is_not_deleted(tmp_path: Path) -> None:
    # GIVEN a local run in another process, held running at its first grove
    state = tmp_path / "state"
    train = ["train", str(_write(tmp_path, "iris", IRIS)), "--run-id", "busy"]
    running = subprocess.Popen(
        [sys.executable, "-c", HOLDING, *train, "--state-dir", str(state)],
        cwd=ROOT,
        env=_holding(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait((tmp_path / "held").exists, "the run held")
        record = mirrored(state, keys.request("busy"))
        assert record.is_file()
        # WHEN it is deleted
        done = _groveflow("delete", "busy", "--yes", "--state-dir", str(state))
        # THEN the delete is refused by name and the run's files stay
        assert running.poll() is None
        assert done.returncode == 2
        assert done.stderr.startswith(
            f"groveflow: RunIsRunning: busy has a running execution (process {running.pid} "
        )
        assert record.is_file()
        assert _listed("--state-dir", str(state))["busy"]["status"] == "RUNNING"
    finally:
        (tmp_path / "released").touch()
        assert running.wait(timeout=600) == 0
    # ... and once it has ended it can be deleted
    _ok(_groveflow("delete", "busy", "--yes", "--state-dir", str(state)))
    assert not mirrored(state, keys.run_prefix("busy")).exists()


def test_a_run_of_the_python_api_is_not_deleted_while_it_runs(tmp_path: Path) -> None:
    import groveflow
    from groveflow.catalog import RunIsRunning

    # GIVEN a run of the Python API on a local engine, held running in another thread
    held = Held()
    with groveflow.Local(state_dir=tmp_path, workers=2, faults=held) as engine:
        results: list[Any] = []
        thread = threading.Thread(
            target=lambda: results.append(groveflow.train(IRIS, engine=engine, run_id="busy"))
        )
        thread.start()
        try:
            held.reached.wait()
            assert mirrored(tmp_path, keys.request("busy")).is_file()
            # WHEN another engine on the state directory deletes it
            # THEN it is refused by name, naming this process, and the run goes on to its end
            with pytest.raises(RunIsRunning, match=f"process {os.getpid()} on this machine"):
                groveflow.delete("busy", engine=groveflow.Local(state_dir=tmp_path))
            assert thread.is_alive()
        finally:
            held.released.set()
            thread.join(timeout=600)
        assert results[0].status == "SUCCEEDED"
        # ... and once it has ended it can be deleted
        assert groveflow.delete("busy", engine=engine).what[0][:2] == ("run", "busy")
    assert not mirrored(tmp_path, keys.run_prefix("busy")).exists()


def test_a_run_and_a_prediction_of_one_id_are_deleted_apart(tmp_path: Path) -> None:
    import groveflow
    from groveflow.catalog import DirPlace, NoSuchRun, plan_deletion
    from groveflow.errors import InvalidRequest

    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    # GIVEN a run and a prediction with the same id
    _summary("train", str(_write(tmp_path, "iris", IRIS)), "--run-id", "both", *local)
    scoring = {"model": "both", "data": {"uri": "sklearn:iris"}, "prediction_id": "both"}
    _summary("predict", str(_write(tmp_path, "scoring", scoring)), *local)
    prediction = _files(mirrored(state, keys.predictions_prefix("both")))
    # WHEN it is deleted without a kind
    question = _delete_answering("n", "both", *local)
    # THEN the question names the run it deletes and the prediction it keeps
    what = r"run both \(\d+ objects; not prediction both, which --kind predict deletes\)"
    where = re.escape(f"from the state directory {state.resolve()}")
    assert re.fullmatch(f"delete {what} {where}\\? \\[y/N\\] nothing deleted\n", question.stderr)
    deleted = _ok(_groveflow("delete", "both", "--yes", *local))
    # ... and only the run goes: the prediction's files are byte for byte as they were
    assert re.fullmatch(f"deleted {what} {where}", deleted)
    assert not mirrored(state, keys.run_prefix("both")).exists()
    assert _files(mirrored(state, keys.predictions_prefix("both"))) == prediction
    assert {i: e["kind"] for i, e in _listed(*local).items()} == {"both": "predict"}
    # WHEN the run is asked for by kind, THEN there is none, and the prediction is named
    with pytest.raises(NoSuchRun) as none:
        plan_deletion(DirPlace(state), "both", kind="train")
    assert str(none.value) == (
        f"no run or search 'both' in the state directory {state.resolve()}; "
        "there is prediction both: --kind predict"
    )
    # WHEN the prediction is deleted by its kind, THEN it goes
    gone = groveflow.delete("both", engine=groveflow.Local(state_dir=state), kind="predict")
    assert [(kind, name) for kind, name, _ in gone.what] == [("prediction", "both")]
    assert not mirrored(state, keys.predictions_prefix("both")).exists()
    # ... and a kind that is none of groveflow runs' KINDs is refused by name
    with pytest.raises(InvalidRequest, match="kind='run' is not one of 'train', "):
        plan_deletion(DirPlace(state), "both", kind="run")


def test_a_stale_running_mark_names_the_file_to_remove(tmp_path: Path) -> None:
    from groveflow.catalog import running_mark

    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    _summary("train", str(_write(tmp_path, "iris", IRIS)), "--run-id", "stale", *local)
    # GIVEN a running mark whose process is alive but not running the run (here: this test,
    # as when a killed run's process id is taken by another process)
    with running_mark(state, "stale"):
        mark = state.resolve() / "executions" / "running" / f"stale.{os.getpid()}.json"
        assert mark.is_file()
        # WHEN the run is deleted
        refused = _groveflow("delete", "stale", "--yes", *local)
        # THEN the refusal says which file to remove if that process is not groveflow
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"groveflow: RunIsRunning: stale has a running execution (process {os.getpid()} "
            "on this machine): wait for it to end, or stop it, then delete; if that process "
            "is not groveflow (a killed run's process id, taken since by another process), "
            f"remove {mark} and delete again"
        )
        # ... and once that file is removed, the run is deleted
        mark.unlink()
        _ok(_groveflow("delete", "stale", "--yes", *local))
    assert not mirrored(state, keys.run_prefix("stale")).exists()


def test_a_search_is_one_entry_reported_by_its_winner_and_deleted_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    # GIVEN a search and a run beside it
    search = _write(tmp_path, "search", {**WINE_SEARCH, "run_id": "tuned"})
    summary = _summary("search", str(search), *local)
    _summary("train", str(_write(tmp_path, "iris", IRIS)), "--run-id", "kept", *local)
    winner = summary["run_id"]
    assert winner.startswith("tuned-c")
    # WHEN the runs are listed
    listed = _listed(*local)
    # THEN the search is one entry, with its winner's figures, its candidates not listed
    assert list(listed) == ["kept", "tuned"]
    assert (listed["tuned"]["kind"], listed["tuned"]["model_run"]) == ("search", winner)
    _assert_listed_as_summarised(listed["tuned"], summary)
    # WHEN the search is reported
    report = Path(_ok(_groveflow("report", "tuned", *local, cwd=tmp_path)))
    # THEN the report is its winner's, written in the working directory
    assert report == tmp_path / "tuned-report" / "report.html"
    assert winner in report.read_text()
    # WHEN a candidate alone is deleted, it is refused, naming the search
    part = _groveflow("delete", winner, "--yes", *local)
    assert part.returncode == 2
    assert f"{winner} is a part of search 'tuned'" in part.stderr
    # WHEN the search is deleted
    kept = _files(mirrored(state, keys.run_prefix("kept")))
    _ok(_groveflow("delete", "tuned", "--yes", *local))
    # THEN the search and every candidate are gone, and the other run is untouched
    runs = mirrored(state, "runs")
    assert sorted(p.name for p in runs.iterdir()) == ["kept"]
    assert _files(runs / "kept") == kept


def test_a_search_owns_only_the_runs_it_made(tmp_path: Path) -> None:
    from groveflow.catalog import DirPlace, plan_deletion

    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    iris = _write(tmp_path, "iris", IRIS)
    # GIVEN ordinary runs named as a validation search's parts would be, then an OOB search
    # (which makes neither a validation split nor a refit winner) beside them
    for bystander in ("exp-val", "exp-final"):
        _summary("train", str(iris), "--run-id", bystander, *local)
    summary = _summary(
        "search", str(_write(tmp_path, "search", {**WINE_SEARCH, "run_id": "exp"})), *local
    )
    # ... and a candidate whose record names the search, stored before the search's document
    # listed it (a search stopped between the two writes)
    runs = mirrored(state, "runs")
    late = json.loads((runs / "exp-c000" / "run.json").read_text())
    (runs / "exp-c009").mkdir()
    (runs / "exp-c009" / "run.json").write_text(json.dumps({**late, "run_id": "exp-c009"}))
    bystanders = {name: _files(runs / name) for name in ("exp-val", "exp-final")}
    # WHEN the runs are listed
    listed = _listed(*local)
    # THEN the bystanders are runs of their own; the search's candidates are not listed
    assert {i: e["kind"] for i, e in listed.items()} == {
        "exp": "search",
        "exp-final": "train",
        "exp-val": "train",
    }
    # WHEN deleting a bystander is planned, it is its own run, not a part of the search
    planned = plan_deletion(DirPlace(state), "exp-final")
    assert [(kind, name) for kind, name, _ in planned.what] == [("run", "exp-final")]
    # WHEN the search is deleted
    deleted = _ok(_groveflow("delete", "exp", "--yes", *local))
    # THEN it goes with its candidates (the late one too) and nothing else
    parts = sorted({summary["run_id"], "exp-c000", "exp-c001", "exp-c009"})
    assert deleted.startswith("deleted search exp (")
    assert all(f"search part {part} (" in deleted for part in parts)
    assert "exp-val" not in deleted and "exp-final" not in deleted
    assert sorted(p.name for p in runs.iterdir()) == ["exp-final", "exp-val"]
    assert {name: _files(runs / name) for name in bystanders} == bystanders
    assert set(_listed(*local)) == {"exp-final", "exp-val"}
    # ... and a bystander is deleted on its own
    assert _ok(_groveflow("delete", "exp-final", "--yes", *local)).startswith(
        "deleted run exp-final ("
    )
    assert sorted(p.name for p in runs.iterdir()) == ["exp-val"]


def test_a_validation_searchs_split_and_refit_winner_are_its_parts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    local = ["--state-dir", str(state)]
    # GIVEN a search scored on a validation split, so it makes vs-val and refits vs-final
    validated = {**WINE_SEARCH, "run_id": "vs"}
    validated["search"] = {**WINE_SEARCH["search"], "metric": "validation"}
    summary = _summary("search", str(_write(tmp_path, "search", validated)), *local)
    assert summary["run_id"] == "vs-final"
    runs = mirrored(state, "runs")
    assert {"vs-val", "vs-final"} <= {p.name for p in runs.iterdir()}
    # WHEN the runs are listed, THEN the search is one entry
    assert list(_listed(*local)) == ["vs"]
    # WHEN the search is deleted, THEN its split and refit winner go with it
    deleted = _ok(_groveflow("delete", "vs", "--yes", *local))
    assert "search part vs-val (" in deleted and "search part vs-final (" in deleted
    assert not runs.exists() or list(runs.iterdir()) == []


def test_the_python_api_lists_and_deletes(tmp_path: Path) -> None:
    # GIVEN two fits of an estimator, each leaving a run and its staged data behind
    from sklearn.datasets import load_iris

    import groveflow

    X, y = load_iris(return_X_y=True)
    with groveflow.Local(state_dir=tmp_path, workers=2) as engine:
        for seed in (0, 1):
            groveflow.GroveForestClassifier(n_trees=4, random_state=seed, engine=engine).fit(X, y)
        fits = groveflow.runs(engine=engine)
        assert [e.kind for e in fits] == ["train", "train"]
        assert all(e.id.startswith("fit-") and e.status == "SUCCEEDED" for e in fits)
        # WHEN one is deleted
        gone = groveflow.delete(fits[0].id, engine=engine)
        # THEN its objects, record and staged data are gone, the other's stay
        assert gone.what[0][:2] == ("run", fits[0].id)
        assert [e.id for e in groveflow.runs(engine=engine)] == [fits[1].id]
        assert sorted(p.stem for p in (tmp_path / "datasets").iterdir()) == [fits[1].id[4:]]
        # ... the engine, still running, forgets it too
        s3 = engine.engine.s3
        assert (
            s3.list_objects_v2(Bucket=LOCAL_BUCKET, Prefix=f"runs/{fits[0].id}/")["KeyCount"] == 0
        )


# ---------------------------------------------------------------- where it cannot write


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("trained")
    request = _write(state, "iris", IRIS)
    _summary("train", str(request), "--run-id", "iris", "--state-dir", str(state))
    return state


@pytest.mark.parametrize(
    ("command", "out", "message"),
    [
        ("report", "a-file", "{out} is a file, not a directory: choose another --out"),
        (
            "export",
            "no-dir/m.joblib",
            "{out}: there is no directory {parent}: choose another --out",
        ),
        ("export", ".", "{out} is a directory, not a file name: choose another --out"),
    ],
)
def test_a_bad_out_path_is_a_named_error(
    trained: Path, tmp_path: Path, command: str, out: str, message: str
) -> None:
    (tmp_path / "a-file").write_text("taken")
    target = tmp_path / out
    done = _groveflow(command, "iris", "--state-dir", str(trained), "--out", str(target))
    assert done.returncode == 2
    expected = message.format(out=target, parent=target.parent)
    assert done.stderr.strip() == f"groveflow: OutputNotWritable: {expected}"
    assert (tmp_path / "a-file").read_text() == "taken"


def test_a_report_whose_default_place_is_taken_says_to_pass_out(
    trained: Path, tmp_path: Path
) -> None:
    # GIVEN a file where the run's report directory would go (RUN-report/, here)
    taken = tmp_path / "iris-report"
    taken.write_text("not a directory")
    # WHEN the run is reported without --out
    done = _groveflow("report", "iris", "--state-dir", str(trained), cwd=tmp_path)
    # THEN one line names the place and says what to do, and the file is untouched
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"groveflow: OutputNotWritable: {taken} is a file, not a directory: pass --out DIR"
    )
    assert taken.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_report_from_a_read_only_working_dir_says_to_pass_out(
    trained: Path, tmp_path: Path
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    here.chmod(0o555)
    try:
        done = _groveflow("report", "iris", "--state-dir", str(trained), cwd=here)
    finally:
        here.chmod(0o755)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"groveflow: OutputNotWritable: {here / 'iris-report'} cannot be written "
        f"({here} is not writable): pass --out DIR"
    )
    elsewhere = Path(
        _ok(_groveflow("report", "iris", "--state-dir", str(trained), "--out", str(tmp_path)))
    )
    assert elsewhere == tmp_path / "report.html"


def test_a_report_of_a_read_only_state_dir_is_written_here(trained: Path, tmp_path: Path) -> None:
    # GIVEN a state directory that takes no writes (another user's, a shared mount)
    run_dir = mirrored(trained, keys.run_prefix("iris"))
    run_dir.chmod(0o555)
    try:
        done = _groveflow("report", "iris", "--state-dir", str(trained), cwd=tmp_path)
    finally:
        run_dir.chmod(0o755)
    # THEN the report is written in the working directory, and the state directory untouched
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / "iris-report" / "report.html"
    assert not (run_dir / "report").exists()


# ------------------------------------------------------------------------ without engine


class _Versioned:
    """An S3 client's two calls a delete makes, over ``n`` versions of ``runs/many/``."""

    def __init__(self, n: int) -> None:
        self.stored = [{"Key": f"runs/many/k{i:05d}", "VersionId": f"v{i}"} for i in range(n)]
        self.requests: list[list[dict[str, str]]] = []

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_object_versions"
        client = self

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
                matching = [v for v in client.stored if v["Key"].startswith(Prefix)]
                yield {"Versions": matching[:700]}
                yield {"Versions": matching[700:], "DeleteMarkers": []}

        return Pages()

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        batch = Delete["Objects"]
        if len(batch) > 1000:
            return {"Errors": [{"Key": "", "Code": "MalformedXML", "Message": "over 1000"}]}
        self.requests.append(batch)
        self.stored = [v for v in self.stored if v not in batch]
        return {}


def test_every_version_is_deleted_in_requests_of_at_most_1000_keys() -> None:
    from groveflow.catalog._places import remove_versions

    # GIVEN 2,345 versions under one run's prefix, and one beside it
    s3 = _Versioned(2345)
    s3.stored.append({"Key": "runs/many-other/k", "VersionId": "w"})
    # WHEN they are removed
    remove_versions(s3, "bucket", ["runs/many/"])
    # THEN in three requests, each of at most 1,000 keys, leaving only the other run's
    assert [len(batch) for batch in s3.requests] == [1000, 1000, 345]
    assert s3.stored == [{"Key": "runs/many-other/k", "VersionId": "w"}]


def test_the_runs_table_is_one_line_a_run_under_a_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from groveflow.catalog import Entry
    from groveflow.console import emit_entries

    entries = [
        Entry(
            "scores", "predict", "SUCCEEDED", None, "rows", 150, None, "2026-12-07T10:00:02+00:00"
        ),
        Entry(
            "digits",
            "train",
            "SUCCEEDED",
            100,
            "accuracy",
            0.97222,
            0.0012,
            "2026-12-07T10:00:01+00:00",
        ),
        Entry("broken", "train", "INCOMPLETE", None, None, None, None, "2026-12-07T10:00:00+00:00"),
    ]
    emit_entries(entries, "the state directory /x", as_json=False)
    emit_entries([], "the state directory /x", as_json=False)
    assert capsys.readouterr().out.splitlines() == [
        "ID      KIND     STATUS      TREES  METRIC           COST USD  CREATED",
        "scores  predict  SUCCEEDED          rows 150                   2026-12-07T10:00:02+00:00",
        "digits  train    SUCCEEDED     100  accuracy 0.9722  0.001200  2026-12-07T10:00:01+00:00",
        "broken  train    INCOMPLETE                                    2026-12-07T10:00:00+00:00",
        "no runs, searches or predictions in the state directory /x",
    ]


def test_a_served_state_directory_is_deleted_through_its_serve(trained: Path) -> None:
    from groveflow.catalog import serving_mark

    # GIVEN a state directory that a live groveflow serve (here: this process) serves
    with serving_mark(trained, "http://127.0.0.1:8083"):
        # WHEN a run is deleted in the directory
        done = _groveflow("delete", "iris", "--yes", "--state-dir", str(trained))
    # THEN it is refused, saying how to delete through the serve, and the run stays
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"groveflow: ServedElsewhere: the state directory {trained} is served by groveflow "
        "serve at http://127.0.0.1:8083, which holds its runs too: delete through it "
        "(`groveflow delete iris --endpoint-url http://127.0.0.1:8083`)"
    )
    assert mirrored(trained, keys.manifest("iris")).is_file()


def test_a_live_serves_state_directory_is_not_deleted_from_under_it(stack: Served) -> None:
    # GIVEN the state directory of a running groveflow serve
    # WHEN a run is deleted in the directory rather than through the endpoint
    done = _groveflow("delete", "anything", "--yes", "--state-dir", str(stack.state_dir))
    # THEN it is refused, naming the endpoint to delete through
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"groveflow: ServedElsewhere: the state directory {stack.state_dir.resolve()} is served "
        f"by groveflow serve at {stack.endpoint}"
    )

"""Any id, any client, nothing lost: run ids, claims, the mirror, predictions' namespace.

What a careless or hostile user does (odd ids and file names, two runs with one id,
a reused prediction id, ``kill -9``) must write nothing it should not, and lose
nothing already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, unique_name
from groveflow.errors import InvalidRequest
from groveflow.ids import check_id, default_id, is_valid_id
from groveflow.layout import keys
from groveflow.local.engine import execution_record, mirrored

GROVEFLOW = [sys.executable, "-m", "groveflow.cli"]
HOSTILE_IDS = [
    "../../../../x",
    "a/b",
    "my run",
    "données",
    "x" * 300,
    "",
    ".hidden",
    "-leading-dash",
]


def _groveflow(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GROVEFLOW, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: NaN and Infinity are refused."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


# --------------------------------------------------------------------------- the id rule


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_the_id_rule_refuses_every_hostile_id_by_name(hostile: str) -> None:
    with pytest.raises(InvalidRequest, match=r"run_id=.* is not accepted: use 1-80 letters"):
        check_id(hostile)
    assert not is_valid_id(hostile)


@pytest.mark.parametrize(
    ("stem", "start"),
    [
        ("my digits", "my-digits-"),
        ("données", "donnees-"),
        ("train.digits.v2", "train-digits-v2-"),
        ("...", "run-"),
        ("日本語", "run-"),
        ("a" * 300, "a" * 64 + "-"),
        ("-x-", "x-"),
    ],
)
def test_default_ids_from_any_file_name_are_accepted(stem: str, start: str) -> None:
    made = default_id(stem, now=0)
    assert made.startswith(start)
    assert is_valid_id(made), made


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("where", ["--run-id", "run_id"])
def test_a_hostile_run_id_writes_nothing_anywhere(tmp_path: Path, hostile: str, where: str) -> None:
    # GIVEN an input file in an otherwise empty directory
    request: dict[str, Any] = {"data": {"uri": "sklearn:iris"}, "n_trees": 2}
    extra: list[str] = []
    if where == "run_id":
        request["run_id"] = hostile
    else:
        extra = [f"--run-id={hostile}"]
    source = tmp_path / "input.json"
    source.write_text(json.dumps(request))
    state = tmp_path / "state"
    # WHEN the user trains with that id
    done = _groveflow("train", str(source), "--state-dir", str(state), *extra, timeout=60)
    # THEN it is refused in one line naming the id, before anything touches disk
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("groveflow: InvalidRequest: "), done.stderr
    assert "is not accepted" in lines[0]
    assert _tree(tmp_path) == ["input.json"]  # '../../../../x' would land in tmp_path


@pytest.mark.parametrize("hostile", ["../x", "a/b", "x" * 81])
def test_a_hostile_prediction_id_writes_nothing(tmp_path: Path, hostile: str) -> None:
    source = tmp_path / "score.json"
    source.write_text(
        json.dumps({"model": "m", "data": {"uri": "sklearn:iris"}, "prediction_id": hostile})
    )
    done = _groveflow("predict", str(source), "--state-dir", str(tmp_path / "state"), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("groveflow: InvalidPredictRequest: prediction_id=")
    assert _tree(tmp_path) == ["score.json"]


def test_an_input_file_with_spaces_and_accents_gets_an_accepted_default_id(
    tmp_path: Path,
) -> None:
    source = tmp_path / "mes données d'iris.json"
    source.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 2}))
    done = _groveflow("train", str(source), "--json", "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    summary = _strict_json(done.stdout)
    assert summary["status"] == "SUCCEEDED"
    assert summary["run_id"].startswith("mes-donnees-d-iris-")
    assert Path(summary["model_dir"], "manifest.json").is_file()


# --------------------------------------------------------------------------- claims


def _popen_train(source: Path, state: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*GROVEFLOW, "train", str(source), "--json", "--run-id", run_id, "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_runs_with_one_id_and_different_inputs_one_wins(tmp_path: Path) -> None:
    # GIVEN two inputs that differ, and one run id, in one state directory
    state = tmp_path / "state"
    sources = []
    for seed in (4, 6):  # (not n_trees: more trees would grow the forest, issue 19)
        source = tmp_path / f"wine-{seed}.json"
        source.write_text(json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "seed": seed}))
        sources.append(source)
    # WHEN both are started together
    runs = [_popen_train(source, state, "contested") for source in sources]
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = sorted(run.returncode for run in runs)
    # THEN exactly one succeeds and the other fails by name
    assert codes == [0, 1], outputs
    summaries = [_strict_json(out) for out, _ in outputs]
    winner = next(s for s in summaries if s["status"] == "SUCCEEDED")
    loser = next(s for s in summaries if s["status"] == "FAILED")
    assert loser["error"] == "InvalidRequest"
    assert "already used with a different input" in loser["cause"]
    # ... the stored model is the winner's and complete
    model = mirrored(state, keys.model_prefix("contested"))
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["trees_requested"] == winner["trees_requested"] == manifest["trees_built"]
    forest = (model / "forest.gfa").read_bytes()
    assert hashlib.sha256(forest).hexdigest() == manifest["forest"]["sha256"]
    # ... no grove of the loser's plan is left behind, and the record is the winner's
    groves = sorted(p.name for p in mirrored(state, keys.groves_prefix("contested")).glob("*.gfa"))
    assert len(groves) == len(manifest["groves"])
    record = json.loads(execution_record(state, run_id="contested").read_text())
    assert record["execution_arn"] == winner["execution_arn"]


# --------------------------------------------------------------------------- kill -9


def _grove_files(state: Path, run_id: str) -> list[Path]:
    return sorted(mirrored(state, keys.groves_prefix(run_id)).glob("grove-*.gfa"))


def _log_lines(state: Path, since: set[Path]) -> list[dict[str, Any]]:
    lines = []
    for path in set((state / "logs").glob("*.log")) - since:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


SLOW_GROVES = {
    "data": {"uri": "sklearn:digits"},
    "n_trees": 60,
    "grove_size": 3,
    "max_concurrency": 1,
}


def _wait_for_groves(state: Path, run_id: str, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while len(_grove_files(state, run_id)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no groves were stored"
        time.sleep(0.05)


def test_after_kill_9_a_rerun_builds_only_the_missing_groves_and_the_same_forest(
    tmp_path: Path,
) -> None:
    # GIVEN a run killed with SIGKILL (the whole process group) once a few groves are stored
    source = tmp_path / "slow.json"
    source.write_text(json.dumps(SLOW_GROVES))
    state = tmp_path / "state"
    args = ["train", str(source), "--json", "--run-id", "killed", "--state-dir", str(state)]
    process = subprocess.Popen(
        [*GROVEFLOW, *args, "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for_groves(state, "killed", 3, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    stored = _grove_files(state, "killed")
    assert 3 <= len(stored) < 20, "the run ended before it was killed"
    # WHEN the same command runs again
    logs_before = set((state / "logs").glob("*.log"))
    done = _groveflow(*args)
    # THEN it succeeds, building only the groves not yet stored (counted from the builders'
    # own log lines), and the forest is byte for byte a clean run's
    assert done.returncode == 0, done.stderr
    lines = _log_lines(state, logs_before)
    built = [line["grove"] for line in lines if line.get("message") == "grove built"]
    reused = [line["grove"] for line in lines if "reused" in line.get("message", "")]
    assert len(built) == 20 - len(stored)
    assert sorted(reused) == list(range(len(stored)))
    clean = _groveflow(
        "train", str(source), "--run-id", "clean", "--state-dir", str(tmp_path / "clean")
    )
    assert clean.returncode == 0, clean.stderr
    assert (mirrored(state, keys.forest("killed"))).read_bytes() == mirrored(
        tmp_path / "clean", keys.forest("clean")
    ).read_bytes()


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_prints_one_line_saying_how_to_resume(
    tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    # GIVEN a local run under way, in its own process group as a terminal runs it
    source = tmp_path / "slow.json"
    source.write_text(json.dumps(SLOW_GROVES))
    state = tmp_path / "state"
    process = subprocess.Popen(
        [*GROVEFLOW, "train", str(source), "--run-id", "stopped", "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for_groves(state, "stopped", 1, process)
    # WHEN the terminal sends the signal to the whole group
    os.killpg(process.pid, sent)
    _, stderr = process.communicate(timeout=120)
    # THEN one line says where the state is and how to resume; no traceback
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "\r" not in stderr  # no terminal: plain progress lines, not redrawn frames
    progress = "BuildGroves: "  # the plain progress line, without a terminal
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(progress)]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("groveflow: interrupted; what stopped stored so far is kept in")
    assert f"--run-id stopped --state-dir {state}" in lines[0]
    assert _grove_files(state, "stopped")


# --------------------------------------------------------------------------- predictions


def _train(engine: Any, run_id: str) -> None:
    request = {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "run_id": run_id}
    result = engine.run("TrainStateMachine", request, name=run_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)


def _rows_csv(path: Path, n_rows: int) -> None:
    from sklearn.datasets import load_iris

    X = np.resize(load_iris().data, (n_rows, 4))
    header = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)"
    np.savetxt(path, X, delimiter=",", header=header, comments="", fmt="%.2f")


def _parts(engine: Any, prediction_id: str) -> list[str]:
    listed = engine.s3.list_objects_v2(
        Bucket=engine.bucket, Prefix=keys.predictions_prefix(prediction_id)
    )
    return sorted(
        o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", []) if "part-" in o["Key"]
    )


def test_a_repeated_prediction_leaves_exactly_one_set_of_parts(engine: Any, tmp_path: Path) -> None:
    # GIVEN a model, and rows scored once in 4 shards
    model = unique_name("pmodel")
    _train(engine, model)
    rows = tmp_path / "rows.csv"
    _rows_csv(rows, 1797)
    prediction_id = unique_name("scores")
    request = {"model": model, "data": {"uri": str(rows)}, "shard_rows": 500}
    first = engine.run(
        "PredictStateMachine", {**request, "prediction_id": prediction_id}, name=unique_name("p1")
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    assert _parts(engine, prediction_id) == [f"part-{i:05d}.csv" for i in range(4)]
    # WHEN the same request is repeated after the file shrank to 2 shards' worth
    _rows_csv(rows, 600)
    again = engine.run(
        "PredictStateMachine", {**request, "prediction_id": prediction_id}, name=unique_name("p2")
    )
    # THEN the prefix holds exactly the new set, in S3 and on disk, and the manifest names it
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert _parts(engine, prediction_id) == ["part-00000.csv", "part-00001.csv"]
    on_disk = sorted(p.name for p in engine.predictions_dir(prediction_id).glob("part-*.csv"))
    assert on_disk == ["part-00000.csv", "part-00001.csv"]
    manifest = json.loads((engine.predictions_dir(prediction_id) / "manifest.json").read_text())
    assert manifest["n_rows"] == 600 and len(manifest["parts"]) == 2
    total = sum(
        len((engine.predictions_dir(prediction_id) / p).read_text().splitlines()) - 1
        for p in on_disk
    )
    assert total == 600


def test_a_reused_prediction_id_with_another_request_is_refused(
    engine: Any, tmp_path: Path
) -> None:
    model = unique_name("pmodel")
    _train(engine, model)
    rows = tmp_path / "rows.csv"
    _rows_csv(rows, 300)
    prediction_id = unique_name("scores")
    request = {"model": model, "data": {"uri": str(rows)}, "prediction_id": prediction_id}
    first = engine.run("PredictStateMachine", request, name=unique_name("p1"))
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    before = (engine.predictions_dir(prediction_id) / "part-00000.csv").read_bytes()
    changed = {**request, "probabilities": True}
    again = engine.run("PredictStateMachine", changed, name=unique_name("p2"))
    assert (again.status, again.error) == ("FAILED", "InvalidPredictRequest")
    assert "already used with a different request" in again.cause
    assert (engine.predictions_dir(prediction_id) / "part-00000.csv").read_bytes() == before
    assert not [i for i in again.invocations if i.function == "ScoreShardFunction"]


def test_a_prediction_named_like_a_training_run_leaves_the_run_untouched(tmp_path: Path) -> None:
    # GIVEN a model trained by the CLI, with its execution record
    state = tmp_path / "state"
    source = tmp_path / "iris.json"
    source.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 2}))
    assert (
        _groveflow("train", str(source), "--run-id", "shared", "--state-dir", str(state)).returncode
        == 0
    )
    record = execution_record(state, run_id="shared")
    run_files = {
        p: p.read_bytes()
        for p in [record, *mirrored(state, "runs/shared/").rglob("*")]
        if p.is_file()
    }
    # WHEN a prediction uses the run's id as its prediction_id
    scoring = tmp_path / "score.json"
    scoring.write_text(
        json.dumps({"model": "shared", "data": {"uri": "sklearn:iris"}, "prediction_id": "shared"})
    )
    done = _groveflow("predict", str(scoring), "--state-dir", str(state))
    # THEN it succeeds in its own namespace and every file of the run is byte-identical
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in run_files} == run_files
    assert execution_record(state, prediction_id="shared").is_file()
    assert mirrored(state, keys.predictions_manifest("shared")).is_file()


# --------------------------------------------------------------------------- JSON


def test_undefined_metrics_are_null_with_a_reason_never_nan(tmp_path: Path) -> None:
    from groveflow.metrics import regression_metrics

    # GIVEN regression targets so large that squared errors overflow float64
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.where(X[:, 0] > 0, 1e200, -1e200)
    data = tmp_path / "huge.npy"
    np.save(data, np.column_stack([X, y]))
    source = tmp_path / "huge.json"
    source.write_text(
        json.dumps(
            {
                "data": {"uri": str(data)},
                "model": {"task": "regression"},
                "n_trees": 2,
                "seed": 1,
            }
        )
    )
    # WHEN it trains
    done = _groveflow(
        "train", str(source), "--json", "--run-id", "huge", "--state-dir", str(tmp_path / "s")
    )
    # THEN the plan refuses it by name before any grove (issue 26 item 11: it failed in Merge
    # after every grove), and the summary is strict JSON
    assert done.returncode == 1
    summary = _strict_json(done.stdout)
    assert (summary["status"], summary["error"]) == ("FAILED", "InvalidDataset")
    assert "the regression target reaches" in summary["cause"]
    # AND a metric that is undefined on a holdout (what the merge reports) is null, with why
    metrics = regression_metrics(y[:4], -y[:4])
    undefined = [name for name, value in metrics.items() if value is None]
    assert "rmse" in undefined
    assert set(undefined) == set(metrics["undefined"])
    assert "overflows" in metrics["undefined"]["rmse"]
    json.dumps(metrics, allow_nan=False)


def test_regression_with_one_held_out_row_is_refused_before_fan_out(
    engine: Any, tmp_path: Path
) -> None:
    data = tmp_path / "tiny.npy"
    np.save(data, np.arange(20.0).reshape(5, 4))
    request = {
        "data": {"uri": str(data)},
        "model": {"task": "regression"},
        "n_trees": 2,
        "test_fraction": 0.2,
    }
    name = unique_name("onerow")
    result = engine.run("TrainStateMachine", request, name=name)
    assert (result.status, result.error) == ("FAILED", "InvalidDataset")
    assert "regression needs at least 2" in result.cause
    assert [i.function for i in result.invocations] == ["PlanFunction"]


def test_a_damaged_forest_fails_predict_by_name_before_any_shard(engine: Any) -> None:
    # GIVEN a model whose forest object was damaged after training
    model = unique_name("damaged")
    _train(engine, model)
    key = keys.forest(model)
    blob = bytearray(engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0xFF
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=bytes(blob))
    # WHEN rows are scored with it (whole forest, and a group of groves at a time)
    request = {"model": model, "data": {"uri": "sklearn:iris"}}
    result = engine.run("PredictStateMachine", request, name=unique_name("pd"))
    # THEN the plan names the damaged object, and no shard ran
    assert (result.status, result.error) == ("FAILED", "ArtifactError"), result.cause
    assert f"s3://{engine.bucket}/{key} differs from its manifest's sha256" in result.cause
    assert not [i for i in result.invocations if i.function == "ScoreShardFunction"]
    grove = keys.grove(model, 0)
    engine.s3.put_object(Bucket=engine.bucket, Key=grove, Body=b"not a grove")
    grouped = engine.run(
        "PredictStateMachine", {**request, "trees_per_group": 2}, name=unique_name("pg")
    )
    assert (grouped.status, grouped.error) == ("FAILED", "ArtifactError"), grouped.cause
    assert f"grove 0 of the model (s3://{engine.bucket}/{grove}) differs" in grouped.cause
    assert not [i for i in grouped.invocations if i.function == "ScoreShardFunction"]


@pytest.mark.parametrize("name", ["run.v2", "données", "a" * 81])
def test_an_execution_name_that_is_no_run_id_is_refused_by_plan(engine: Any, name: str) -> None:
    # GIVEN an execution AWS would accept, named so that it cannot name a run, and no run_id
    event = {"request": {"data": {"uri": "sklearn:iris"}}, "execution_name": name}
    # WHEN its Plan runs
    outcome = engine.invoke("PlanFunction", json.dumps(event).encode())
    # THEN it is refused by name, saying what to do, and nothing is stored
    error = json.loads(outcome.payload)
    assert error["errorType"] == "InvalidRequest"
    assert "give run_id in the input" in error["errorMessage"]
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"runs/{name}")
    assert not listed.get("Contents")


def test_concurrent_conditional_writes_in_one_process_have_one_winner(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN sixteen writers racing to create one key through the local endpoint, with
    # moto's store slowed so that its check-then-store window is wide open
    from concurrent.futures import ThreadPoolExecutor

    from moto.s3.models import S3Backend

    key = f"claims/{unique_name('race')}/run.json"
    store = S3Backend.put_object

    def slow_store(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if key_name == key:
            time.sleep(0.05)
        return store(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_store)

    def create(body: int) -> str:
        try:
            engine.s3.put_object(
                Bucket=engine.bucket, Key=key, Body=str(body).encode(), IfNoneMatch="*"
            )
        except engine.s3.exceptions.ClientError as error:
            return str(error.response["Error"]["Code"])
        return "created"

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(create, range(16)))
    # THEN exactly one created it, the others were refused, and the object is the winner's
    assert sorted(answers) == ["PreconditionFailed"] * 15 + ["created"]
    stored = engine.s3.get_object(Bucket=engine.bucket, Key=key)["Body"].read()
    assert stored == str(answers.index("created")).encode()

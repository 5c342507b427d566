"""The ``groveflow`` command as a newcomer meets it (issue 30): plain help, a quiet closed pipe,
progress that ends with the final counts without a terminal, input refused before the engine
starts, a prediction's summary, a rerun's reused groves, one estimate."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import EVENTS, ROOT
from groveflow.follow import Progress

GROVEFLOW = [sys.executable, "-m", "groveflow.cli"]
FINAL_COUNTS = re.compile(r"^BuildGroves: 10/10 done, 0 failed, 0 running +[\d.]+s$")


def _groveflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GROVEFLOW, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


@dataclass(frozen=True)
class Trained:
    state: Path
    first: subprocess.CompletedProcess[str]
    rerun: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The Quick start's digits run from the command line, its output a pipe (no terminal),
    then the same command again."""
    state = tmp_path_factory.mktemp("state")
    command = ("train", str(EVENTS / "train-digits.json"), "--workers", "2")
    first = _groveflow(*command, "--state-dir", str(state))
    rerun = _groveflow(*command, "--state-dir", str(state))
    assert first.returncode == 0 and rerun.returncode == 0, first.stderr + rerun.stderr
    return Trained(state, first, rerun)


def _commands() -> dict[str, argparse.ArgumentParser]:
    from groveflow.cli import _parser

    parser = _parser()
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **found[0].choices}


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_is_plain_text_and_every_option_says_what_it_is(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from groveflow.cli import main

    # WHEN a command's help is asked for
    with pytest.raises(SystemExit) as ended:
        main([name, "--help"] if name else ["--help"])
    text = capsys.readouterr().out
    # THEN it is plain text, no reStructuredText roles or literals
    assert ended.value.code == 0
    assert not re.search(r":(func|mod|class|meth|data):|``", text), text
    # ... and every argument and option has help text, an option its default where it has one
    command, flowing = _commands()[name], " ".join(text.split())
    for action in command._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f"{name or 'groveflow'} {action.option_strings or action.dest}"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in flowing, f"{name} {action.option_strings}"
    if name == "estimate":
        assert re.search(
            r"--plan-memory-mb PLAN_MEMORY_MB\s+PlanMemorySize \(default: 3008\)", text
        )


def test_output_to_a_pipe_closed_early_ends_without_a_traceback(tmp_path: Path) -> None:
    # GIVEN `groveflow train ... | head -1` at its worst: the reader gone before any output
    request = tmp_path / "wine.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:wine"}, "n_trees": 4, "grove_size": 2}))
    state = tmp_path / "state"
    command = [*GROVEFLOW, "train", str(request), "--run-id", "piped", "--state-dir", str(state)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    # WHEN the run ends and its summary meets the closed pipe
    stderr = process.stderr.read()
    code = process.wait(timeout=300)
    # THEN it ends as a command killed by SIGPIPE does, quietly, the run stored
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code == 141
    assert (
        state / "s3" / "groveflow-local" / "runs" / "piped" / "model" / "manifest.json"
    ).is_file()


def test_without_a_terminal_stderr_ends_with_the_final_counts(trained: Trained) -> None:
    # GIVEN a run whose stderr is a pipe; THEN its last line is the Map's final counts
    lines = trained.first.stderr.splitlines()
    assert lines and FINAL_COUNTS.match(lines[-1]), trained.first.stderr
    assert all(line.startswith("BuildGroves: ") for line in lines)


def _progress(succeeded: int, running: int, seconds: float, total: int = 10) -> Progress:
    return Progress("RUNNING", "BuildGroves", succeeded, 0, running, total, seconds)


def test_plain_progress_is_a_line_per_stage_end_and_the_last_counts_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from groveflow.console import ProgressBar

    # GIVEN a stage that ends, then one that is still going when the run stops
    bar = ProgressBar(enabled=True, terminal=False)
    for progress in (_progress(0, 2, 0.1), _progress(4, 2, 0.5), _progress(10, 0, 0.9)):
        bar(progress)
    bar(Progress("RUNNING", "ScoreShards", 0, 0, 2, 4, 1.0))
    bar(Progress("FAILED", "ScoreShards", 1, 3, 0, 4, 1.2))
    bar(Progress("FAILED", "ScoreShards", 1, 3, 0, 4, 1.3))
    bar.finish()
    # THEN one line for each stage's end, with its final counts, nothing repeated
    assert capsys.readouterr().err.splitlines() == [
        "BuildGroves: 10/10 done, 0 failed, 0 running    0.9s",
        "ScoreShards: 1/4 done, 3 failed, 0 running    1.2s",
    ]
    # ... and a run stopped mid-stage ends with the last counts seen
    bar = ProgressBar(enabled=True, terminal=False)
    bar(_progress(0, 2, 0.1))
    bar(_progress(3, 2, 0.4))
    bar.finish()
    assert capsys.readouterr().err == "BuildGroves: 3/10 done, 0 failed, 2 running    0.4s\n"


@pytest.mark.parametrize(
    ("command", "request_body", "named"),
    [
        ("train", {"data": {"uri": "sklearn:digits"}, "n_tres": 4}, "did you mean 'n_trees'?"),
        (
            "train",
            {
                "data": {"uri": "sklearn:iris"},
                "predict": {"data": {"uri": "x.csv"}, "shard_row": 9},
            },
            "predict: unknown key 'shard_row'",
        ),
        (
            "predict",
            {"model": "m", "data": {"uri": "sklearn:digits"}, "shard_row": 9},
            "did you mean 'shard_rows'?",
        ),
        (
            "search",
            {"data": {"uri": "sklearn:iris"}, "search": {"strategy": "grid"}, "n_tres": 4},
            "did you mean 'n_trees'?",
        ),
    ],
)
def test_an_unknown_key_is_refused_before_any_engine_starts(
    command: str,
    request_body: dict[str, Any],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import groveflow.engines
    from groveflow.cli import main

    # GIVEN an input with a typo, and no engine to be had
    def no_engine(**_: Any) -> None:
        raise AssertionError("an engine was asked for")

    monkeypatch.setattr(groveflow.engines, "engine_for", no_engine)
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(request_body))
    state = tmp_path / "state"
    # WHEN it is run
    code = main([command, str(path), "--state-dir", str(state)])
    # THEN it is refused by name, as a usage error, with nothing written
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("groveflow: Invalid") and named in error, error
    assert not state.exists()


class _EngineAskedFor(Exception):
    pass


def test_a_search_without_an_id_is_checked_with_the_id_it_runs_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import groveflow.engines
    from groveflow.cli import main

    # GIVEN a valid search naming no id (a search needs one: the command gives it the file's)
    def engine_for(**_: Any) -> None:
        raise _EngineAskedFor

    monkeypatch.setattr(groveflow.engines, "engine_for", engine_for)
    path = tmp_path / "valid.json"
    space = {"max_depth": [2, 4]}
    path.write_text(
        json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 8, "search": {"space": space}})
    )
    # WHEN it is run; THEN the check lets it through to the engine
    with pytest.raises(_EngineAskedFor):
        main(["search", str(path), "--state-dir", str(tmp_path / "state")])


def test_predict_prints_a_summary_and_its_json_names_the_prediction(
    trained: Trained, tmp_path: Path
) -> None:
    # GIVEN the digits model
    request = tmp_path / "score.json"
    request.write_text(
        json.dumps({"model": "digits-demo", "data": {"uri": "sklearn:digits"}, "shard_rows": 900})
    )
    state = str(trained.state)
    # WHEN rows are scored, with a text summary and with --json
    text = _groveflow("predict", str(request), "--state-dir", state)
    request.write_text(json.dumps({**json.loads(request.read_text()), "prediction_id": "p-json"}))
    as_json = _groveflow("predict", str(request), "--state-dir", state, "--json")
    # THEN the text reads as train's does: the prediction, its rows, seconds, cost, where
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    lines = text.stdout.splitlines()
    assert re.fullmatch(r"predict   score-\d{8}-\d{6}", lines[0]), lines
    assert lines[1] == "rows      1797 scored, in 2 parts"
    assert re.fullmatch(r"seconds   [\d.]+", lines[2])
    assert lines[3].startswith("cost      $")
    assert lines[-1].startswith("scores    ") and Path(lines[-1][10:]).is_dir()
    # ... and the JSON names the prediction where a prediction's fields go
    described = json.loads(as_json.stdout)
    where = trained.state / "s3" / "groveflow-local" / "predictions" / "p-json"
    assert (described["run_id"], described["prediction_id"]) == (None, "p-json")
    assert described["predictions"] == {
        "prediction_id": "p-json",
        "predictions_uri": "s3://groveflow-local/predictions/p-json/manifest.json",
        "n_rows": 1797,
        "n_parts": 2,
        "predictions_dir": str(where),
    }
    assert described["groves_reused"] is None


def test_a_rerun_says_how_many_groves_it_reused(trained: Trained) -> None:
    # GIVEN the same run twice; THEN the first reused none and says nothing of it
    assert not [line for line in trained.first.stdout.splitlines() if line.startswith("reused")]
    # ... and the rerun says it kept every grove
    lines = trained.rerun.stdout.splitlines()
    assert lines[1] == "trees     100 of 100 in 10 groves"
    assert lines[2] == (
        "reused    10 of 10 groves, stored by an earlier execution of this run (not fitted again)"
    )


def _line(text: str, label: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(f"{label:<10}")]
    assert len(found) == 1, text
    return found[0]


def test_estimate_gives_the_run_summary_s_figures_for_the_same_input_and_workers(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import groveflow.api
    from groveflow.cli import main
    from groveflow.estimates import RunEstimate

    # GIVEN the trial the run's plan measured, as its record holds it (a trial is a
    # measurement, which the estimate and the run make each of their own: here the same one)
    record = trained.state / "s3" / "groveflow-local" / "runs" / "digits-demo" / "run.json"
    planned = RunEstimate.from_dict(json.loads(record.read_text())["estimate"])
    monkeypatch.setattr(groveflow.api, "_bounded", lambda *_: planned)
    # WHEN the same input is estimated for the same workers
    assert main(["estimate", str(EVENTS / "train-digits.json"), "--workers", "2"]) == 0
    estimated = capsys.readouterr().out
    # THEN it prints the run summary's estimate line, figure for figure
    line = _line(trained.rerun.stdout, "estimate")
    assert re.fullmatch(r"estimate  local [\d.]+ s on 2 workers; AWS [\d.]+ s, \$0\.\d{6}", line)
    assert _line(estimated, "estimate") == line


def test_a_rerun_on_a_stack_endpoint_says_how_many_groves_it_reused(tmp_path: Path) -> None:
    from test_cli import _serving

    # GIVEN a run trained through an endpoint, as on a deployed stack (a warm groveflow serve)
    request = tmp_path / "wine.json"
    request.write_text(
        json.dumps(
            {
                "run_id": "served-rerun",
                "data": {"uri": "sklearn:wine"},
                "n_trees": 4,
                "grove_size": 2,
            }
        )
    )
    with _serving(tmp_path / "served") as served:
        command = ("train", str(request), "--endpoint-url", served.endpoint, "--json")
        first, rerun = _groveflow(*command), _groveflow(*command)
    # WHEN it is run again; THEN the rerun counts the groves it kept in the bucket
    assert first.returncode == 0 and rerun.returncode == 0, first.stderr + rerun.stderr
    assert json.loads(first.stdout)["groves_reused"] == 0
    assert json.loads(rerun.stdout)["groves_reused"] == 2


def test_estimate_prices_the_builders_the_run_is_given(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import groveflow.api
    from groveflow.cli import main
    from groveflow.estimates import RunEstimate

    # GIVEN the run's plan, which priced builders of the memory the engine gave them
    record = trained.state / "s3" / "groveflow-local" / "runs" / "digits-demo" / "run.json"
    planned = RunEstimate.from_dict(json.loads(record.read_text())["estimate"])
    asked: list[tuple[Any, ...]] = []

    def bounded(limit_mb: int, parameter: str, work: Any, *args: Any) -> Any:
        if parameter == "IngestMemorySize":
            return False  # sklearn: data, nothing to ingest
        _body, settings, _converted = args
        asked.append((limit_mb, *settings))
        return planned

    monkeypatch.setattr(groveflow.api, "_bounded", bounded)
    # WHEN the same input is estimated without memory options
    assert main(["estimate", str(EVENTS / "train-digits.json"), "--workers", "2"]) == 0
    capsys.readouterr()
    # THEN it reads at the plan's memory and prices the builders the run had
    plan_mb, workers, builder_mb, _, _ = asked[0]
    assert (plan_mb, workers, builder_mb) == (3008, 2, planned.builder_memory_mb)

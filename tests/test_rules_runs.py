"""Right answers when a run is grown, resumed or reused (issue 26): a warm scorer never scores
an older forest, a run started by execution name can be resumed and grown, a refusal names the
keys that differ."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest

from conftest import unique_name
from evidence import body
from groveflow.artifact import load_forest
from groveflow.layout import keys

DIGITS = {"data": {"uri": "sklearn:digits"}, "grove_size": 10, "seed": 3}


def _proba(engine: Any, predictions_uri: str) -> tuple[list[str], np.ndarray]:
    """The ``proba_<class>`` columns of a prediction's parts, in row order."""
    bucket, _, key = predictions_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = key.rsplit("/", 1)[0]
    rows: list[dict[str, str]] = []
    for part in manifest["parts"]:
        text = engine.s3.get_object(Bucket=bucket, Key=f"{prefix}/{part['key']}")["Body"].read()
        rows.extend(csv.DictReader(io.StringIO(text.decode())))
    columns = [c for c in rows[0] if c.startswith("proba_")]
    return columns, np.array([[float(r[c]) for c in columns] for r in rows])


def _predict(engine: Any, run_id: str) -> Any:
    name = unique_name("score")
    request = {
        "model": run_id,
        "data": {"uri": "sklearn:digits"},
        "probabilities": True,
        "shard_rows": 300,  # six shards: every worker of the engine scores one
    }
    result = engine.run("PredictStateMachine", request, name=name, run_id=name)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result


def test_a_grown_forest_is_scored_with_its_new_trees_on_a_warm_engine(engine: Any) -> None:
    from sklearn.datasets import load_digits

    X = load_digits().data
    # GIVEN a 20-tree digits forest, scored in six shards (every ScoreShard worker is warm)
    run_id = unique_name("warm-grow")
    first = engine.run(
        "TrainStateMachine", {**DIGITS, "n_trees": 20, "run_id": run_id}, name=unique_name(run_id)
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    _predict(engine, run_id)
    # WHEN the run grows to 40 trees and is scored again on the same engine
    grown = engine.run(
        "TrainStateMachine", {**DIGITS, "n_trees": 40, "run_id": run_id}, name=unique_name(run_id)
    )
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    assert json.loads(body(engine, keys.manifest(run_id)))["trees_built"] == 40
    again = _predict(engine, run_id)
    # THEN the probabilities are the grown forest's own, exactly
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.n_trees == 40 and forest.classes_ is not None
    columns, proba = _proba(engine, again.output["predictions_uri"])
    assert columns == [f"proba_{c}" for c in forest.classes_]
    assert np.max(np.abs(proba - forest.predict_proba(X))) == 0


def test_a_training_runs_predictions_under_their_own_id_are_kept_in_the_state_dir(
    engine: Any, state_dir: Any
) -> None:
    from groveflow.local.engine import mirrored

    # GIVEN a training input whose predict section names its own prediction_id
    run_id = unique_name("scored-run")
    prediction_id = unique_name("scored-run-predictions")
    request = {
        **DIGITS,
        "n_trees": 10,
        "run_id": run_id,
        "predict": {"data": {"uri": "sklearn:digits"}, "prediction_id": prediction_id},
    }
    # WHEN the run ends
    result = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["predictions"]["prediction_id"] == prediction_id
    # THEN its predictions are in the state directory, as the bucket holds them
    manifest_key = keys.predictions_manifest(prediction_id)
    on_disk = mirrored(state_dir, manifest_key)
    assert on_disk.is_file()
    assert on_disk.read_bytes() == body(engine, manifest_key)
    for part in json.loads(on_disk.read_bytes())["parts"]:
        part_key = f"{keys.predictions_prefix(prediction_id)}{part['key']}"
        assert mirrored(state_dir, part_key).read_bytes() == body(engine, part_key)


WINE = {"data": {"uri": "sklearn:wine"}, "model": {"params": {"oob_score": True}}, "seed": 17}


def _builds(result: Any) -> list[int]:
    return sorted(
        i.payload["grove"]
        for i in result.invocations
        if i.function == "BuildGroveFunction" and i.error_type is None
    )


def _fitted(result: Any) -> list[int]:
    """The groves a run fitted (a builder that found its grove stored reuses it)."""
    return sorted(
        i.payload["grove"]
        for i in result.invocations
        if i.function == "BuildGroveFunction" and i.error_type is None and not i.output["reused"]
    )


def _manifest(engine: Any, run_id: str) -> dict[str, Any]:
    return json.loads(body(engine, keys.manifest(run_id)))


def test_a_run_started_by_execution_name_is_grown_by_an_input_naming_it(engine: Any) -> None:
    # GIVEN a run started by execution name alone (no run_id in its input)
    name = unique_name("by-name")
    first = engine.run("TrainStateMachine", {**WINE, "n_trees": 10}, name=name)
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    # WHEN a new execution names the run and asks for more trees
    grown = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 20, "run_id": name}, name=unique_name(name)
    )
    # THEN it grows the run: only the new grove is built
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    assert _builds(grown) == [1]
    assert _manifest(engine, name)["trees_built"] == 20
    # and the same input again resumes it (every grove is found stored, none fitted)
    again = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 20, "run_id": name}, name=unique_name(name)
    )
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert _builds(again) == [0, 1] and _fitted(again) == []


def test_a_run_with_the_default_grove_size_grows_in_groves_of_that_size(engine: Any) -> None:
    # GIVEN 6 trees with grove_size left out (one grove of 6)
    run_id = unique_name("grow-default-size")
    first = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 6, "run_id": run_id}, name=unique_name(run_id)
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    before = _manifest(engine, run_id)["groves"]
    # WHEN it grows to 18, grove_size still left out
    grown = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 18, "run_id": run_id}, name=unique_name(run_id)
    )
    # THEN the run keeps its groves of 6: the first is kept byte for byte, two are built
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    assert _builds(grown) == [1, 2]
    after = _manifest(engine, run_id)["groves"]
    assert after[0]["sha256"] == before[0]["sha256"]
    assert [g["n_trees"] for g in after] == [6, 6, 6]


def test_an_auto_forest_grows_when_max_trees_is_raised(engine: Any) -> None:
    # GIVEN an n_trees="auto" forest that stopped at its max_trees (round_trees left out)
    run_id = unique_name("grow-auto-max")
    auto = {**WINE, "n_trees": "auto", "oob_tolerance": 0.0, "run_id": run_id}
    first = engine.run("TrainStateMachine", {**auto, "max_trees": 10}, name=unique_name(run_id))
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    assert _manifest(engine, run_id)["auto"]["stopped"] == "max_trees=10 reached"
    # WHEN the same input raises max_trees
    grown = engine.run("TrainStateMachine", {**auto, "max_trees": 30}, name=unique_name(run_id))
    # THEN the forest grows past 10 trees in rounds of the run's 10, keeping its first grove
    assert grown.status == "SUCCEEDED", (grown.error, grown.cause)
    manifest = _manifest(engine, run_id)
    assert manifest["trees_built"] >= 20
    assert [r["n_trees"] for r in manifest["auto"]["rounds"]][:2] == [10, 20]
    assert _fitted(grown) and 0 not in _fitted(grown)


def test_a_reused_run_id_is_refused_naming_the_keys_that_differ(engine: Any) -> None:
    # GIVEN a finished run
    run_id = unique_name("refuse-diff")
    first = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 10, "run_id": run_id}, name=unique_name(run_id)
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    # WHEN its id is given with another seed and max_depth
    other = {
        **WINE,
        "n_trees": 10,
        "run_id": run_id,
        "seed": 18,
        "model": {"params": {"oob_score": True, "max_depth": 3}},
    }
    refused = engine.run("TrainStateMachine", other, name=unique_name(run_id))
    # THEN it is refused, naming both keys with their values, and nothing is built
    assert refused.status == "FAILED"
    assert refused.error == "InvalidRequest"
    assert "already used with a different input" in refused.cause
    assert "model.params.max_depth (absent before, 3 now)" in refused.cause
    assert "seed (17 before, 18 now)" in refused.cause
    assert _builds(refused) == []


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


def test_a_training_into_a_searchs_id_is_refused_naming_its_winner(
    tmp_path: Any, capsys: Any
) -> None:
    from groveflow.cli import main
    from groveflow.local.engine import mirrored

    state = ["--state-dir", str(tmp_path / "state")]
    search_file = tmp_path / "search.json"
    search_file.write_text(json.dumps({**WINE_SEARCH, "run_id": "tuned"}))
    train_file = tmp_path / "train.json"
    train_file.write_text(json.dumps({k: v for k, v in WINE_SEARCH.items() if k != "search"}))
    # GIVEN a finished search
    assert main(["search", str(search_file), "--json", *state]) == 0
    winner = json.loads(capsys.readouterr().out)["run_id"]
    assert winner.startswith("tuned-c")
    # WHEN a training names the search's id (with the search's own base input)
    assert main(["train", str(train_file), "--run-id", "tuned", "--json", *state]) != 0
    # THEN it is refused by name, naming the winner, and nothing is stored under the search
    captured = capsys.readouterr()
    refusal = captured.out + captured.err
    assert "InvalidRequest" in refusal
    assert "'tuned' is the id of search 'tuned'" in refusal
    assert f"its model is run '{winner}'" in refusal
    assert not mirrored(tmp_path / "state", keys.manifest("tuned")).exists()
    assert not mirrored(tmp_path / "state", keys.groves_prefix("tuned")).exists()
    # AND a training into the winner's own id (a candidate of the search) likewise
    assert main(["train", str(train_file), "--run-id", winner, "--json", *state]) != 0
    captured = capsys.readouterr()
    assert f"'{winner}' is a part of search 'tuned'" in captured.out + captured.err
    # AND the search's report is its winner's
    out = tmp_path / "tuned-report"
    assert main(["report", "tuned", *state, "--out", str(out)]) == 0
    report = capsys.readouterr().out.strip()
    assert report == str(out / "report.html")
    assert winner in (out / "report.html").read_text()
    # AND the search can be repeated, to the same winner
    assert main(["search", str(search_file), "--json", *state]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == winner


def test_a_search_whose_parts_ids_hold_runs_is_refused_before_anything_is_written(
    tmp_path: Any, capsys: Any
) -> None:
    from groveflow.cli import main
    from groveflow.local.engine import mirrored

    state = ["--state-dir", str(tmp_path / "state")]
    train_file = tmp_path / "train.json"
    train_file.write_text(json.dumps({k: v for k, v in WINE_SEARCH.items() if k != "search"}))
    search_file = tmp_path / "search.json"
    validation = {**WINE_SEARCH["search"], "metric": "validation"}
    search_file.write_text(json.dumps({**WINE_SEARCH, "run_id": "exp", "search": validation}))
    # GIVEN an ordinary run named as a validation search "exp"'s split would be
    assert main(["train", str(train_file), "--run-id", "exp-val", "--json", *state]) == 0
    capsys.readouterr()
    record, manifest = (
        mirrored(tmp_path / "state", key).read_bytes()
        for key in (keys.request("exp-val"), keys.manifest("exp-val"))
    )
    # WHEN the search "exp" is started
    assert main(["search", str(search_file), "--json", *state]) != 0
    # THEN it is refused by name, before the search writes anything, and the run is intact
    captured = capsys.readouterr()
    refusal = captured.out + captured.err
    assert "InvalidRequest" in refusal
    assert "would make run 'exp-val', which already holds a run of its own" in refusal
    assert not mirrored(tmp_path / "state", keys.request("exp")).exists()
    assert mirrored(tmp_path / "state", keys.request("exp-val")).read_bytes() == record
    assert mirrored(tmp_path / "state", keys.manifest("exp-val")).read_bytes() == manifest


def _regression_csv(path: Any, n_rows: int, scale: float) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_rows, 2))
    y = scale * ((1 + X[:, 0] ** 2) / (1 + np.max(X[:, 0] ** 2)))  # at most scale
    lines = [
        "x0,x1,y",
        *(f"{float(a)!r},{float(b)!r},{float(t)!r}" for (a, b), t in zip(X, y, strict=True)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_regression_search_with_a_one_row_validation_split_is_refused_before_any_grove(
    engine: Any, tmp_path: Any
) -> None:
    # GIVEN a regression search scored on a validation split of one row (6 training rows)
    search_id = unique_name("one-row-validation")
    request = {
        "data": {"uri": _regression_csv(tmp_path / "small.csv", 8, 1.0), "target": "y"},
        "model": {"task": "regression"},
        "n_trees": 4,
        "grove_size": 2,
        "run_id": search_id,
        "search": {
            "space": {"min_samples_leaf": [1, 2]},
            "strategy": "grid",
            "metric": "validation",
            "validation_fraction": 0.1,
            "trees_per_round": 2,
        },
    }
    result = engine.run("SearchStateMachine", request, name=unique_name(search_id))
    # THEN the search is refused by name, before any grove is built
    assert result.status == "FAILED"
    assert result.error == "InvalidRequest", result.cause
    assert "search.validation_fraction=0.1" in result.cause
    assert "1 validation row" in result.cause
    assert _builds(result) == []


def test_a_regression_target_whose_squares_overflow_is_refused_before_any_grove(
    engine: Any, tmp_path: Any
) -> None:
    # GIVEN a regression target near float64's largest value
    run_id = unique_name("huge-target")
    request = {
        "data": {"uri": _regression_csv(tmp_path / "huge.csv", 60, 1e308), "target": "y"},
        "model": {"task": "regression"},
        "n_trees": 4,
        "grove_size": 2,
        "run_id": run_id,
    }
    result = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    # THEN the run is refused by name, before any grove is built
    assert result.status == "FAILED"
    assert result.error == "InvalidDataset", result.cause
    assert "the regression target reaches" in result.cause
    assert _builds(result) == []


@pytest.mark.parametrize(
    ("test_fraction", "advice"),
    [
        (0.2, "raise test_fraction to at least 0.334"),
        (0.9, "lower test_fraction to at most 0.666"),
    ],
    ids=["too-few-held-out", "too-few-to-train"],
)
def test_too_few_rows_per_class_are_refused_with_the_fix_that_works(
    engine: Any, tmp_path: Any, test_fraction: float, advice: str
) -> None:
    # GIVEN 1,000 classes of 3 rows each
    path = tmp_path / "many-classes.csv"
    rows = [f"{i % 7}.5,{i}.25,c{i // 3}" for i in range(3000)]
    path.write_text("x0,x1,label\n" + "\n".join(rows) + "\n")
    run_id = unique_name("many-classes")
    request = {
        "data": {"uri": str(path), "target": "label"},
        "n_trees": 2,
        "test_fraction": test_fraction,
        "run_id": run_id,
    }
    # WHEN it is trained
    result = engine.run("TrainStateMachine", request, name=unique_name(run_id))
    # THEN the refusal names the counts and the change of test_fraction that would split them
    assert result.status == "FAILED"
    assert result.error == "InvalidDataset", result.cause
    assert "3000 rows, 1000 classes" in result.cause
    assert advice in result.cause
    assert _builds(result) == []


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        ({"manifest_version": 99}, "the model manifest {uri} has manifest_version=99"),
        ({"run_id": "x"}, "the model manifest {uri} is not a groveflow document of its kind"),
        ("{not json", "{uri} is not valid JSON"),
    ],
    ids=["newer-version", "missing-fields", "not-json"],
)
def test_a_damaged_model_manifest_is_named_once_in_a_predict_refusal(
    engine: Any, manifest: Any, says: str
) -> None:
    # GIVEN a model manifest that is not one this groveflow reads
    run_id = unique_name("damaged-manifest")
    key = keys.manifest(run_id)
    data = manifest if isinstance(manifest, str) else json.dumps(manifest)
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=data.encode())
    # WHEN a prediction names its run
    name = unique_name("score-damaged")
    request = {"model": run_id, "data": {"uri": "sklearn:wine"}}
    result = engine.run("PredictStateMachine", request, name=name, run_id=name)
    # THEN the refusal names the manifest once, by its URI
    assert result.status == "FAILED"
    message = json.loads(result.cause)["errorMessage"]
    assert message.startswith(says.format(uri=f"s3://{engine.bucket}/{key}"))
    assert "manifest the model manifest" not in message


def test_a_merge_killed_after_its_heavy_work_leaves_no_model_file_without_a_manifest(
    engine: Any,
) -> None:
    from evidence import At, faults
    from groveflow.local.faults import Fault

    # GIVEN a merge killed (as by running out of memory) once it has evaluated the forest and
    # computed its OOB scores, its peak, on every attempt
    run_id = unique_name("merge-killed")
    killed = Fault("crash", "before:runs/*/model/oob*.npy")
    with faults(engine, At("MergeFunction", killed, attempts=tuple(range(1, 100)))):
        result = engine.run(
            "TrainStateMachine", {**WINE, "n_trees": 10, "run_id": run_id}, name=run_id
        )
    # THEN the run fails, and its model directory holds no file at all
    assert result.status == "FAILED"
    merges = [i.error_type for i in result.invocations if i.function == "MergeFunction"]
    assert merges and set(merges) == {"Runtime.ExitError"}
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=keys.model_prefix(run_id))
    assert listed.get("KeyCount", 0) == 0
    # AND the same input again stores the model whole
    again = engine.run(
        "TrainStateMachine", {**WINE, "n_trees": 10, "run_id": run_id}, name=unique_name(run_id)
    )
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    forest = load_forest(str(engine.run_dir(run_id) / "model"))
    assert forest.n_trees == 10


def test_estimate_refuses_a_builder_memory_lambda_cannot_have(tmp_path: Any, capsys: Any) -> None:
    from groveflow.cli import main

    request = tmp_path / "iris.json"
    request.write_text(json.dumps({"data": {"uri": "sklearn:iris"}, "n_trees": 4}))
    # WHEN the estimate is asked for builders of 1 MB
    assert main(["estimate", str(request), "--builder-memory-mb", "1"]) == 2
    # THEN it is refused by name, with what BuilderMemorySize accepts
    assert "builder_memory_mb=1: give a whole number of MB from 256 to 10240" in (
        capsys.readouterr().err
    )

"""Hyperparameter search as a state machine: successive halving with groves as the budget.

Each search runs the real SearchStateMachine on the local engine: SearchPlan, one grove Map
per round over (candidate, grove) items, ScoreRound, and the normal Merge of the winner.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, unique_name
from evidence import body, faults
from groveflow.errors import InvalidRequest
from groveflow.layout import keys
from groveflow.local.faults import Fault, FaultInjector
from groveflow.oob import OOBTotals, read_oob
from groveflow.tuning import parse_search, schedule

SEARCH = "SearchStateMachine"
WINE = {
    "data": {"uri": "sklearn:wine"},
    "n_trees": 30,
    "grove_size": 5,
    "seed": 11,
    "search": {
        "space": {"max_features": ["sqrt", 0.8], "min_samples_leaf": [1, 4, 12]},
        "strategy": "halving",
        "metric": "oob",
        "factor": 3,
        "trees_per_round": 5,
    },
}


def _search(engine: Any, request: dict[str, Any], search_id: str | None = None) -> Any:
    search_id = search_id or unique_name("search")
    result = engine.run(SEARCH, {**request, "run_id": search_id}, name=unique_name(search_id))
    return search_id, result


def _builds(result: Any) -> list[tuple[str, int]]:
    return sorted(
        (i.payload["run_id"], i.payload["grove"])
        for i in result.invocations
        if i.function == "BuildGroveFunction" and i.error_type is None
    )


def _manifest(engine: Any, run_id: str) -> dict[str, Any]:
    return json.loads(body(engine, keys.manifest(run_id)))


def test_halving_keeps_the_best_third_grows_survivors_and_merges_the_winner(engine: Any) -> None:
    # GIVEN 6 candidates, 5 trees each in round one, factor 3, 30 trees in the end
    search_id, result = _search(engine, WINE)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    board = result.output["search"]
    # THEN round one scored 6 candidates at 5 trees, round two the best 2 at 15
    assert board["rounds"] == [[6, 5], [2, 15]]
    ran = {c["run_id"]: [t for t, _ in c["scores"]] for c in board["candidates"]}
    assert sorted(ran.values()) == [[5]] * 4 + [[5, 15]] * 2
    # AND the two survivors were the two best of round one
    first = sorted(board["candidates"], key=lambda c: -c["scores"][0][1])
    survivors = {r for r, trees in ran.items() if trees == [5, 15]}
    assert {c["run_id"] for c in first[:2]} == survivors
    # AND survivors grew: each grove was built once (rounds and the winner's growth reuse them)
    builds = _builds(result)
    assert len(builds) == len(set(builds)) == 6 * 1 + 2 * 2 + 3
    assert board["trees_fitted"] == 6 * 5 + 2 * 10 + 15
    # AND the winner is the model: 30 trees, the normal merge, the leaderboard in its manifest
    winner = board["winner"]
    assert winner in survivors and result.output["run_id"] == winner
    manifest = _manifest(engine, winner)
    assert manifest["trees_built"] == manifest["trees_requested"] == 30
    assert manifest["search"] == board
    assert manifest["params"] == {**board["winner_params"]}
    # AND each score is the OOB score of the candidate's groves at that many trees
    record = json.loads(body(engine, keys.request(winner)))
    y = np.load(io.BytesIO(body(engine, keys.split(search_id, "y_train"))))
    totals = OOBTotals(y_train=y, classes=np.array(record["classes"]))
    groves = [read_oob(body(engine, keys.grove_oob(winner, g)), len(y), 3) for g in range(3)]
    totals.add_all(((5, s, c) for s, c in groves), 15)
    (winning,) = [c for c in board["candidates"] if c["run_id"] == winner]
    assert winning["scores"][1] == [15, totals.score()]


def test_the_same_search_gives_the_same_leaderboard_and_model_bytes_on_any_workers(
    engine: Any, tmp_path: Path
) -> None:
    from groveflow.local import LocalEngine

    # GIVEN one search input, run on the session's two workers and on a fresh one-worker engine
    request = {**WINE, "seed": 5}
    first_id, first = _search(engine, request)
    with LocalEngine(ROOT, workers=1, state_dir=tmp_path) as single:
        second_id, second = _search(single, request)
        assert first.status == second.status == "SUCCEEDED", (second.error, second.cause)
        one, two = first.output["search"], second.output["search"]
        # THEN the leaderboards agree (but for the ids) and the winners' forests byte for byte
        assert json.dumps(one).replace(first_id, "S") == json.dumps(two).replace(second_id, "S")
        assert body(engine, keys.forest(one["winner"])) == body(single, keys.forest(two["winner"]))


def test_a_rerun_with_the_same_id_reuses_every_stored_grove(engine: Any) -> None:
    search_id, first = _search(engine, {**WINE, "seed": 3})
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    forest = body(engine, keys.forest(first.output["run_id"]))
    _, again = _search(engine, {**WINE, "seed": 3}, search_id)
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    reused = [
        i.output.get("reused")
        for i in again.invocations
        if i.function == "BuildGroveFunction" and i.output
    ]
    assert reused and all(reused)
    assert again.output["search"] == first.output["search"]
    assert body(engine, keys.forest(again.output["run_id"])) == forest
    # AND another input under the same id is refused by name
    _, other = _search(engine, {**WINE, "seed": 4}, search_id)
    assert other.status == "FAILED" and "different input" in str(other.cause)


def test_validation_metric_scores_on_a_carved_split_and_refits_the_winner(engine: Any) -> None:
    request = {
        **WINE,
        "search": {
            "space": {"min_samples_leaf": [1, 8], "max_depth": [2, None]},
            "strategy": "grid",
            "metric": "validation",
            "trees_per_round": 10,
        },
    }
    search_id, result = _search(engine, request)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    board = result.output["search"]
    assert board["rounds"] == [[4, 10]]
    # THEN candidates fit 80% of the training split and the winner refits on all of it
    n_train = json.loads(body(engine, keys.request(search_id)))["data"]["n_train"]
    fit = np.load(io.BytesIO(body(engine, keys.split(f"{search_id}-val", "y_train"))))
    assert len(fit) == n_train - int(np.ceil(0.2 * n_train))
    assert result.output["run_id"] == f"{search_id}-final"
    manifest = _manifest(engine, f"{search_id}-final")
    assert manifest["trees_built"] == 30 and manifest["metrics"]["n_test"] > 0
    assert manifest["params"] == board["winner_params"]


BAD = [
    ({"space": {}}, "search.space is empty"),
    ({"space": {"max_featurs": [1, 2]}}, "unknown key 'max_featurs'"),
    ({"space": {"min_samples_leaf": [1, 0]}}, "candidate c001 {'min_samples_leaf': 0}"),
    ({"space": {"bootstrap": [True, False]}}, "metric='oob' needs bootstrap=true"),
    (
        {"space": {"min_samples_leaf": list(range(1, 200))}, "trees_per_round": 300},
        "more than 10000",
    ),
    (
        {"space": {"min_samples_leaf": list(range(1, 12)), "max_depth": list(range(1, 20))}},
        "makes 209 candidates, more than 200",
    ),
]


@pytest.mark.parametrize(("search", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_inputs_are_refused_by_name_before_any_grove(
    engine: Any, search: dict[str, Any], message: str
) -> None:
    request = {**WINE, "n_trees": 300, "search": {"factor": 3, **search}}
    with pytest.raises(InvalidRequest, match=message.replace("{", r"\{").replace("(", r"\(")):
        parse_search({**request, "run_id": "s"})
    _, result = _search(engine, request)
    assert (result.status, result.error) == ("FAILED", "InvalidRequest")
    assert message in str(result.cause)
    assert [i.function for i in result.invocations] == ["SearchPlanFunction"]


def test_the_halving_schedule() -> None:
    base, spec, params = parse_search(
        {
            "data": {"uri": "sklearn:wine"},
            "run_id": "s",
            "n_trees": 200,
            "search": {"space": {"min_samples_leaf": list(range(1, 28))}, "trees_per_round": 4},
        }
    )
    assert len(params) == 27 and all(p["oob_score"] for p in params)
    assert schedule(spec, 27, base.n_trees) == [(27, 4), (9, 12), (3, 36)]
    assert schedule(spec, 27, 20) == [(27, 4), (9, 12), (3, 20)]


def test_the_cli_searches_through_the_api_and_a_rerun_resumes(tmp_path: Path) -> None:
    import subprocess
    import sys

    # GIVEN a search input file and a fresh state directory
    path = tmp_path / "wine-search.json"
    path.write_text(json.dumps({**WINE, "run_id": "wine-search"}))
    command = [sys.executable, "-m", "groveflow.cli", "search", str(path), "--workers", "2"]
    command += ["--state-dir", str(tmp_path / "state")]
    # WHEN `groveflow search` runs it
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    # THEN it prints the winner's run and the leaderboard, and the model is mirrored
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run       wine-search-c")
    assert any(line.startswith("search    wine-search: halving on oob, 65 trees") for line in lines)
    winner = lines[0].split()[1]
    model = tmp_path / "state" / "s3" / "groveflow-local" / "runs" / winner / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["search"]["winner"] == winner
    forest = (model / "forest.gfa").read_bytes()
    # AND a second process with the same input resumes from the mirror to the same model
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == lines[0]
    assert (model / "forest.gfa").read_bytes() == forest


def test_the_report_of_the_winner_shows_the_leaderboard(engine: Any, tmp_path: Path) -> None:
    from groveflow.report import write_report

    # GIVEN a search whose candidate runs are mirrored (as groveflow.search mirrors them)
    search_id = unique_name("search-report")
    engine.mirror.take(f"runs/{search_id}-")
    _, result = _search(engine, WINE, search_id)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    board = result.output["search"]
    # WHEN the winner's report is written
    text = write_report(engine.run_dir(board["winner"]), tmp_path).read_text()
    # THEN it has the search section: every candidate, its score at each round's trees
    assert "<h2>Hyperparameter search</h2>" in text
    assert f"{len(board['candidates'])} candidates, {board['trees_fitted']} trees fitted" in text
    for candidate in board["candidates"]:
        assert f'<tr id="search-{candidate["run_id"]}">' in text
        for _, score in candidate["scores"]:
            assert f'data-value="{score}"' in text
    assert f"{board['winner']} (chosen)" in text
    # AND the holdout plots, from the search's shared split
    assert (tmp_path / "confusion_matrix.png").is_file()


class _FailingGroves(FaultInjector):
    """Every attempt of the named (candidate suffix, grove) builds runs out of memory."""

    def __init__(self, groves: set[tuple[str, int]]) -> None:
        super().__init__()
        self.groves = groves

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
        if function != "BuildGroveFunction":
            return None
        hit = (payload["run_id"].rsplit("-", 1)[-1], payload["grove"]) in self.groves
        return Fault("oom") if hit else None


def test_tolerated_failures_count_per_candidate(engine: Any) -> None:
    # GIVEN 2 groves per candidate in round one, 50% tolerated, c002 losing one grove
    # and c004 both
    request = {
        **WINE,
        "tolerated_failure_percentage": 50,
        "search": {
            **WINE["search"],
            "strategy": "grid",
            "trees_per_round": 10,
        },
    }
    with faults(engine, _FailingGroves({("c002", 1), ("c004", 0), ("c004", 1)})):
        _, result = _search(engine, request)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    scores = {c["run_id"][-4:]: c["scores"] for c in result.output["search"]["candidates"]}
    # THEN c002 is scored on its one grove, c004 ranks last without a score
    assert scores["c002"][0][1] is not None and scores["c004"] == [[10, None]]
    assert result.output["search"]["candidates"][-1]["run_id"].endswith("c004")


def test_groveflow_search_is_the_function_after_the_tuning_module_loads() -> None:
    import groveflow
    import groveflow.tuning  # what api.search and the handlers import

    assert groveflow.search.__module__ == "groveflow.api"
    assert groveflow.SearchResult.__name__ == "SearchResult"


def test_max_cost_usd_covers_the_whole_search(engine: Any) -> None:
    from groveflow.estimates import RunEstimate
    from groveflow.tuning import search_cost_usd, search_size

    # GIVEN a search of 18 candidates, and the plan's estimate of one 30-tree forest
    space = {"max_features": ["sqrt", 0.5, 0.8], "min_samples_leaf": [1, 4, 12]}
    request = {
        **WINE,
        "seed": 21,
        "search": {**WINE["search"], "space": {**space, "max_depth": [None, 4]}},
    }
    search_id, done = _search(engine, request)
    assert done.status == "SUCCEEDED", (done.error, done.cause)
    stored = json.loads(body(engine, keys.request(search_id)))["estimate"]
    one = RunEstimate.from_dict(stored).cost_usd
    base, spec, params = parse_search({**request, "run_id": "s"})
    trees, groves = search_size(spec, base, len(params))
    assert (trees, groves) == (done.output["search"]["trees_fitted"], len(_builds(done)))
    whole = search_cost_usd(stored, groves)
    assert whole == one * groves / 6
    # WHEN a cap lets one forest through but not the search (a wide margin: each plan
    # measures its own trial grove)
    _, result = _search(engine, {**request, "max_cost_usd": (one * whole) ** 0.5})
    # THEN the search is refused by name before any grove
    assert (result.status, result.error) == ("FAILED", "BudgetExceeded"), result.cause
    assert "the search is estimated to cost" in str(result.cause)
    assert [i.function for i in result.invocations] == ["SearchPlanFunction"]


def test_a_winner_already_at_n_trees_is_merged_without_another_map(engine: Any) -> None:
    # GIVEN a halving whose last round already gives its candidates the final 15 trees
    _, result = _search(engine, {**WINE, "n_trees": 15})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.output["search"]["rounds"] == [[6, 5], [2, 15]]
    # THEN the winner's groves were all built in the rounds, and it was merged as it stood
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in engine.history(result.execution_arn)
        if "stateEnteredEventDetails" in e
    ]
    assert entered.count("BuildGroves") == 2 and entered[-3:] == ["AfterBuild", "Merge", "Searched"]
    assert result.output["trees_built"] == 15


def test_random_candidates_are_drawn_from_the_seed_within_their_distributions() -> None:
    space = {
        "max_features": {"uniform": [0.2, 0.9]},
        "min_samples_leaf": {"randint": [1, 10]},
        "min_impurity_decrease": {"loguniform": [1e-6, 1e-2]},
        "criterion": ["gini", "entropy"],
    }
    request = {**WINE, "run_id": "s", "search": {"space": space, "n_candidates": 8}}
    _, spec, params = parse_search(request)
    # THEN 8 candidates, each value inside its distribution, the same for the same seed
    assert len(params) == 8 and spec.strategy == "halving"
    for p in params:
        assert 0.2 <= p["max_features"] < 0.9 and isinstance(p["min_samples_leaf"], int)
        assert 1 <= p["min_samples_leaf"] < 10 and 1e-6 <= p["min_impurity_decrease"] < 1e-2
        assert p["criterion"] in ("gini", "entropy") and p["oob_score"] is True
    assert parse_search(request)[2] == params
    assert parse_search({**request, "seed": 12})[2] != params
    # AND a sampled space without n_candidates, or under grid, is refused by name
    with pytest.raises(InvalidRequest, match=r"search\.n_candidates is needed"):
        parse_search({**request, "search": {"space": space}})
    with pytest.raises(InvalidRequest, match="strategy='grid' needs lists"):
        parse_search({**request, "search": {"space": space, "n_candidates": 4, "strategy": "grid"}})
    with pytest.raises(InvalidRequest, match=r"search.space.max_depth=\{'normal'"):
        parse_search({**request, "search": {"space": {"max_depth": {"normal": [1, 2]}}}})


def test_a_random_halving_search_runs(engine: Any) -> None:
    space = {"max_features": {"uniform": [0.2, 0.9]}, "min_samples_leaf": {"randint": [1, 10]}}
    search = {"space": space, "n_candidates": 4, "strategy": "random", "trees_per_round": 5}
    _, result = _search(engine, {**WINE, "search": search})
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    board = result.output["search"]
    assert board["rounds"] == [[4, 5]] and board["strategy"] == "random"
    assert result.output["trees_built"] == 30


def test_a_candidate_that_does_not_fit_the_data_is_refused_before_any_grove(engine: Any) -> None:
    # GIVEN monotonic constraints on wine's 3 classes: valid for scikit-learn, not for this data
    search = {**WINE["search"], "space": {"monotonic_cst": [None, [1] * 13]}}
    _, result = _search(engine, {**WINE, "search": search})
    # THEN the plan refuses that candidate by name, and no grove is built
    assert (result.status, result.error) == ("FAILED", "InvalidRequest")
    assert "search candidate c001 {'monotonic_cst': [1, 1, 1, 1" in str(result.cause)
    assert "does not fit this dataset" in str(result.cause)
    assert [i.function for i in result.invocations] == ["SearchPlanFunction"]


def test_a_search_reads_csv_through_the_ingest_step(engine: Any, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    # GIVEN the wine table as a CSV with a text target
    bunch = load_wine()
    path = tmp_path / "wine.csv"
    names = np.array(["barolo", "grignolino", "barbera"])[bunch.target]
    lines = [",".join([*(f"f{i}" for i in range(13)), "cultivar"])]
    rows = zip(bunch.data, names, strict=True)
    lines += [",".join([*map(repr, map(float, row)), label]) for row, label in rows]
    path.write_text("\n".join(lines) + "\n")
    request = {**WINE, "data": {"uri": str(path), "target": "cultivar"}}
    # WHEN it is searched
    _, result = _search(engine, request)
    # THEN the CSV went through Ingest first and the search chose a winner on its rows
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    functions = [i.function for i in result.invocations]
    assert functions[:3] == ["ValidateRequestFunction", "IngestFunction", "SearchPlanFunction"]
    manifest = _manifest(engine, result.output["run_id"])
    assert manifest["classes"] == ["barbera", "barolo", "grignolino"]
    assert manifest["data"]["n_rows"] == 178
    # AND a bad search of a CSV is refused before anything is read
    bad = {**request, "search": {**WINE["search"], "space": {}}}
    _, refused = _search(engine, bad)
    assert (refused.status, refused.error) == ("FAILED", "InvalidRequest")
    assert [i.function for i in refused.invocations] == ["ValidateRequestFunction"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"predict": {"data": {"uri": "sklearn:wine"}}}, "does not score a predict section"),
        ({"search": {**WINE["search"], "space": {"max_samples": [1000]}}}, "max_samples"),
        ({"search": {**WINE["search"], "strategy": "random", "n_candidates": 2,
                     "space": {"min_samples_leaf": {"randint": [1, 10**30]}}}}, "too large"),
        ({"search": {**WINE["search"], "strategy": "random", "n_candidates": 2,
                     "space": {"max_features": {"uniform": [-1e308, 1e308]}}}}, "too large"),
    ],
)  # fmt: skip
def test_more_bad_searches_are_refused_by_name(
    engine: Any, change: dict[str, Any], message: str
) -> None:
    request = {**WINE, **change}
    _, result = _search(engine, request)
    assert (result.status, result.error) == ("FAILED", "InvalidRequest"), result.cause
    assert message in str(result.cause)
    assert "BuildGroveFunction" not in [i.function for i in result.invocations]


def test_a_csv_search_without_run_id_is_validated_and_named_by_its_execution(
    engine: Any, tmp_path: Path
) -> None:
    path = tmp_path / "iris.csv"
    from sklearn.datasets import load_iris

    bunch = load_iris()
    lines = [
        "a,b,c,d,label",
        *(",".join([*map(str, r), str(t)]) for r, t in zip(bunch.data, bunch.target, strict=True)),
    ]
    path.write_text("\n".join(lines) + "\n")
    request = {**WINE, "data": {"uri": str(path), "target": "label"}}
    name = unique_name("csv-search")
    result = engine.run(SEARCH, request, name=name)
    assert result.status == "SUCCEEDED", (result.error, result.cause)


@pytest.mark.parametrize(
    "search",
    [
        # monotonic constraints do not fit a three-class target
        {**WINE["search"], "space": {"monotonic_cst": [None, [1] * 13]}},
        {**WINE["search"], "space": {"max_samples": [1000]}},
    ],
)
def test_a_search_refused_for_a_candidate_stores_nothing(
    engine: Any, search: dict[str, Any]
) -> None:
    # GIVEN a candidate the data refuses (checked against the split, before any write)
    search_id, result = _search(engine, {**WINE, "search": search})
    assert (result.status, result.error) == ("FAILED", "InvalidRequest"), result.cause
    # THEN the search wrote nothing: no run record, split or plan under its id
    listed = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=f"runs/{search_id}/")
    assert listed.get("KeyCount", 0) == 0, [o["Key"] for o in listed.get("Contents", [])]

"""Hyperparameter search with groves as the budget: grid, random, and successive halving.

A search is a training request with a ``search`` section. Its id (the request's ``run_id``)
names one run that holds the data split; each candidate is a run of its own
(``<search>-c007``) whose ``data/source.json`` names that split, so no split is copied. Every
round builds the surviving candidates' groves in one Distributed Map; :func:`score_round`
ranks them by their groves' summed OOB predictions (:class:`groveflow.oob.OOBTotals`) or by
their votes on a validation split carved from the training split, keeps the best
``1 / factor`` and plans the next round, in which survivors grow: their earlier groves are
kept, as a grown forest keeps them. The winner grows to the request's ``n_trees`` (or, with
the validation metric, is refit on the whole training split) and the normal merge makes it
the model, with the leaderboard in its manifest.

Everything is a function of the input: candidates are drawn from the request's seed, every
candidate's groves get the request's grove seeds, and ties rank by candidate number, so the
same input gives the same leaderboard and model bytes on any number of workers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from groveflow import artifact, storage, telemetry, training
from groveflow.documents import (
    RunRecord,
    check_search,
    new_search_record,
    search_parts,
    search_rank,
)
from groveflow.errors import BudgetExceeded, GroveMissing, InvalidDataset, InvalidRequest
from groveflow.estimates import RunEstimate
from groveflow.fan_out import fan_out_concurrency
from groveflow.ids import ACCEPTED, is_valid_id
from groveflow.layout import keys
from groveflow.oob import OOBTotals, check_oob_coverage, read_oob
from groveflow.request import (
    MAX_CANDIDATES,
    MAX_GROVES,
    SearchSpec,
    TrainRequest,
    _validate_params,
    make_estimator,
    parse_search_section,
    parse_train_request,
)
from groveflow.training import read_split, stored_search

__all__ = [
    "SearchSpec",  # declared in groveflow.request with the other input sections
    "candidate_params",
    "parse_search",
    "plan_search",
    "run_ids",
    "schedule",
    "score_round",
]

# ------------------------------------------------------------------------------ the input


def parse_search(value: Any) -> tuple[TrainRequest, SearchSpec, list[dict[str, Any]]]:
    """The base training request, the search section and every candidate's ``model.params``.

    Every candidate is checked against scikit-learn here, before anything is written.

    Raises
    ------
    InvalidRequest
        Naming the bad section, parameter, value or candidate.
    """
    if not isinstance(value, dict) or not isinstance(value.get("search"), dict):
        raise InvalidRequest("a search input is a training request with a 'search' object")
    if value.get("n_trees") == "auto":
        raise InvalidRequest("a search grows its candidates itself: give n_trees a number")
    if value.get("predict") is not None:
        raise InvalidRequest(
            "a search does not score a predict section: once it ends, predict with its "
            "winner's model (the run id in its output)"
        )
    base = parse_train_request({k: v for k, v in value.items() if k != "search"})
    if base.run_id is None:
        raise InvalidRequest("a search needs a run_id (the search id)")
    spec = parse_search_section(value["search"], base.n_trees)
    params = candidate_params(spec, base)
    if len(params) > MAX_CANDIDATES:
        raise InvalidRequest(
            f"search.space makes {len(params)} candidates, more than {MAX_CANDIDATES}: "
            "give fewer values, or draw n_candidates of them (strategy 'random' or 'halving')"
        )
    _check_candidates(params, spec, base)
    _check_groves(spec, base, len(params))
    for number in (len(params) - 1, 0):
        if not is_valid_id(candidate_id(base.run_id, number)):
            raise InvalidRequest(
                f"run_id {base.run_id!r} is too long for its candidates' run ids "
                f"({candidate_id(base.run_id, number)!r}); run ids are {ACCEPTED}"
            )
    return base, spec, params


def candidate_params(spec: SearchSpec, base: TrainRequest) -> list[dict[str, Any]]:
    """Every candidate's ``model.params``: the base params updated with one point of the
    space; the grid in the space's order, or ``n_candidates`` drawn from the request's seed
    (without replacement when the space is all lists)."""
    names = list(spec.space)
    lists = all(isinstance(v, list) for v in spec.space.values())
    if lists:
        grid = [dict(zip(names, point, strict=True)) for point in _grid(spec.space)]
        if spec.n_candidates is None or spec.n_candidates >= len(grid):
            points = grid
        else:
            rng = np.random.default_rng(base.seed)
            chosen = np.sort(rng.permutation(len(grid))[: spec.n_candidates])
            points = [grid[i] for i in chosen]
    else:
        assert spec.n_candidates is not None
        rng = np.random.default_rng(base.seed)
        points = [
            {name: _draw(rng, spec.space[name]) for name in names} for _ in range(spec.n_candidates)
        ]
    extra = {"oob_score": True} if spec.metric == "oob" else {}
    return [{**base.model.params, **point, **extra} for point in points]


def _grid(space: dict[str, Any]) -> itertools.product[tuple[Any, ...]]:
    return itertools.product(*space.values())


def _draw(rng: np.random.Generator, dimension: Any) -> Any:
    if isinstance(dimension, list):
        return dimension[int(rng.integers(len(dimension)))]
    ((kind, (low, high)),) = dimension.items()
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(low, high))


def _check_candidates(params: list[dict[str, Any]], spec: SearchSpec, base: TrainRequest) -> None:
    """Each candidate's params, as scikit-learn validates them, before any fan-out."""
    kind, task = base.model.kind, base.model.task
    if spec.metric == "oob":
        for number, candidate in enumerate(params):
            if not candidate.get("bootstrap", kind == "random_forest"):
                raise InvalidRequest(
                    f"search.metric='oob' needs bootstrap=true, and candidate c{number:03d} "
                    f"has bootstrap=false ({kind}): use metric 'validation', or keep bootstrap"
                )
    for number, candidate in enumerate(params):
        try:
            _validate_params(kind, task, candidate)
        except InvalidRequest as error:
            message = str(error).replace("model.params", "search.space", 1)
            point = {k: candidate[k] for k in spec.space if k in candidate}
            raise InvalidRequest(f"search candidate c{number:03d} {point}: {message}") from None


def schedule(spec: SearchSpec, n_candidates: int, n_trees: int) -> list[tuple[int, int]]:
    """Each round's ``(candidates, trees per candidate)``: one round for grid and random;
    for halving, ``ceil(candidates / factor)`` survive each round with ``factor`` times the
    trees, until one would remain or the trees reach ``n_trees``."""
    rounds = [(n_candidates, min(spec.trees_per_round, n_trees))]
    while spec.strategy == "halving":
        alive, trees = rounds[-1]
        keep = -(-alive // spec.factor)
        if keep <= 1 or trees >= n_trees:
            break
        rounds.append((keep, min(trees * spec.factor, n_trees)))
    return rounds


def search_size(spec: SearchSpec, base: TrainRequest, n_candidates: int) -> tuple[int, int]:
    """Trees and grove builds of the whole search, the winner's growth included: each round
    builds its survivors' groves past the last round's full ones (a partial grove is
    rebuilt at its new size); with the validation metric the winner is refit whole."""
    size = base.grove_size
    rounds = schedule(spec, n_candidates, base.n_trees)
    steps = [(a, t, p) for (a, t), p in zip(rounds, previous_trees(rounds), strict=True)]
    steps.append((1, base.n_trees, 0 if spec.metric == "validation" else rounds[-1][1]))
    trees = groves = 0
    for alive, n_trees, grown_from in steps:
        kept = grown_from // size
        trees += alive * (n_trees - kept * size)
        groves += alive * (-(-n_trees // size) - kept)
    return trees, groves


def previous_trees(rounds: list[tuple[int, int]]) -> list[int]:
    """Each round's trees per candidate before it (0 for the first)."""
    return [0, *(trees for _, trees in rounds[:-1])]


def _check_budget(base: TrainRequest, spec: SearchSpec, n: int, record: dict[str, Any]) -> None:
    """Refuse a search whose estimated cost is above ``max_cost_usd``: the plan's estimate of
    one run of ``n_trees`` (a trial grove on the real split, :mod:`groveflow.estimates`),
    scaled by the search's grove builds over that run's (the builders dominate a run's cost,
    and every grove but a last partial one has ``grove_size`` trees)."""
    if base.max_cost_usd is None:
        return
    if record.get("estimate") is None:
        raise BudgetExceeded(
            f"max_cost_usd={base.max_cost_usd:g}: this search's run record has no estimate "
            "(an earlier groveflow planned it) to check the cap against; drop max_cost_usd or "
            "use a new run_id"
        )
    trees, groves = search_size(spec, base, n)
    cost_usd = search_cost_usd(record["estimate"], groves)
    if cost_usd > base.max_cost_usd:
        raise BudgetExceeded(
            f"the search is estimated to cost ${cost_usd:.6f} on AWS ({n} candidates: "
            f"{trees} trees in {groves} grove builds), above max_cost_usd="
            f"{base.max_cost_usd:g}: raise max_cost_usd, or search fewer candidates or "
            "trees_per_round"
        )


def search_cost_usd(estimate: dict[str, Any], groves: int) -> float:
    """A run's estimate (``RunRecord.estimate``) scaled to ``groves`` grove builds."""
    run = RunEstimate.from_dict(estimate)
    return run.cost_usd * groves / max(1, run.groves)


def _check_groves(spec: SearchSpec, base: TrainRequest, n_candidates: int) -> None:
    grove_size = base.grove_size
    rounds = schedule(spec, n_candidates, base.n_trees)
    _, builds = search_size(spec, base, n_candidates)
    if builds > MAX_GROVES:
        raise InvalidRequest(
            f"the search plans {builds} grove builds ({n_candidates} candidates x groves of "
            f"{grove_size} trees over {len(rounds)} rounds, and the winner's), more than "
            f"{MAX_GROVES}: fewer candidates, fewer trees_per_round, or a larger grove_size"
        )


def candidate_id(search_id: str, number: int) -> str:
    """A candidate's run id: ``<search>-c007``."""
    return f"{search_id}-c{number:03d}"


def final_id(search_id: str) -> str:
    """The winner refit on the whole training split (``metric="validation"``)."""
    return f"{search_id}-final"


def validation_id(search_id: str) -> str:
    """The run holding the validation split (``metric="validation"``): its ``X_train`` is
    what candidates fit, its ``X_test`` what they are scored on."""
    return f"{search_id}-val"


def run_ids(value: Any) -> list[str]:
    """Every run a search input makes besides the search's own (for a local mirror)."""
    base, spec, params = parse_search(value)
    assert base.run_id is not None
    return _part_ids(base.run_id, spec, len(params))


def _part_ids(search_id: str, spec: SearchSpec, n_candidates: int) -> list[str]:
    """The runs a search makes: its candidates, and with ``metric="validation"`` the run
    holding the validation split and the winner's refit."""
    ids = [candidate_id(search_id, i) for i in range(n_candidates)]
    if spec.metric == "validation":
        ids += [validation_id(search_id), final_id(search_id)]
    return ids


def _refuse_taken_parts(
    bucket: str, search_id: str, part_ids: list[str], stored: dict[str, Any] | None
) -> None:
    """Refuse, before anything is written, a search whose parts' ids hold runs of their own
    (an ordinary run ``<search>-val`` would have its split overwritten by the validation
    split; ``<search>-final`` would be refused only after every round was paid for). A part
    this search wrote names it as its ``search_id`` (the validation split has no record), or
    is named by its stored document (``stored``: records written before they said so)."""
    named = search_parts(search_id, stored) if stored is not None else set()
    for run_id in (run_id for run_id in part_ids if run_id not in named):
        key = keys.request(run_id)
        if not storage.exists(bucket, key):
            continue
        if storage.get_json(bucket, key).get("search_id") != search_id:
            raise InvalidRequest(
                f"search {search_id!r} would make run {run_id!r}, which already holds a run "
                f"of its own; choose another run_id for the search, or delete {run_id!r}"
            )


# ------------------------------------------------------------------------------- the plan


def plan_search(
    event: dict[str, Any],
    *,
    bucket: str,
    builder_memory_mb: int,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
    builder_reserved_concurrency: int | None = None,
) -> dict[str, Any]:
    """Check the search, split the data once (as a run's plan does), write every candidate's
    run record and the first round's grove plan.

    Parameters are those of :func:`groveflow.training.plan_run`; ``event`` is
    ``{"request": <search input>, "execution_name": str, "converted": dict or None}``
    (``converted``: the Ingest step's columnar copy of CSV or Parquet data, as for a run).

    Returns
    -------
    dict
        The first round's plan (``run_id`` the search id, ``plan_key``, ``n_groves``,
        ``max_concurrency``...), with ``round`` and ``stage``.
    """
    raw = event.get("request")
    if isinstance(raw, dict) and raw.get("run_id") is None:  # as a run: the execution's name
        raw = {**raw, "run_id": training.run_id_from(event.get("execution_name"))}
    base, spec, params = parse_search(raw)
    search_id = base.run_id
    assert search_id is not None and isinstance(raw, dict)  # parse_search accepted it
    stored = stored_search(bucket, search_id)
    _refuse_another_input(stored, raw, search_id)
    _refuse_taken_parts(bucket, search_id, _part_ids(search_id, spec, len(params)), stored)
    base_dict = {k: v for k, v in base.to_dict().items() if k != "predict"}
    checked: list[bool] = []

    def check(split: dict[str, np.ndarray], estimate: dict[str, Any] | None) -> None:
        """Every candidate against the split, before the plan writes anything."""
        _check_search(base, spec, params, split["X_train"], split["y_train"], estimate=estimate)
        checked.append(True)

    training.plan_run(
        {
            "request": base_dict,
            "execution_name": event.get("execution_name"),
            "converted": event.get("converted"),  # the Ingest step's columnar copy of CSV/Parquet
        },
        bucket=bucket,
        builder_memory_mb=builder_memory_mb,
        data_buckets=data_buckets,
        local_paths=local_paths,
        builder_reserved_concurrency=builder_reserved_concurrency,
        before_write=check,
        search=True,
    )
    record = storage.get_json(bucket, keys.request(search_id))
    if not checked:  # the split was already stored (a resumed search): check against it
        X, y = (read_split(bucket, search_id, name) for name in ("X_train", "y_train"))
        _check_search(base, spec, params, X, y, estimate=record.get("estimate"))
    source = search_id
    if spec.metric == "validation":
        source = validation_id(search_id)
        _carve_validation(bucket, search_id, source, spec, base)
    ids = [candidate_id(search_id, i) for i in range(len(params))]
    for run_id, candidate in zip(ids, params, strict=True):
        _write_candidate(bucket, record, run_id, candidate, base=base, source=source)
    rounds = schedule(spec, len(ids), base.n_trees)
    document = new_search_record(
        raw, asdict(spec), dict(zip(ids, params, strict=True)), rounds, source
    )
    return _plan_round(bucket, search_id, document, 0, builder_reserved_concurrency)


def _refuse_another_input(
    stored: dict[str, Any] | None, raw: dict[str, Any], search_id: str
) -> None:
    """Refuse a search id already run with another input (the same input resumes it)."""
    if stored is None or stored["input"] == raw:
        return
    differences = training.request_differences(stored["input"], raw)
    named = "; ".join(training.describe_difference(k, v) for k, v in differences.items())
    raise InvalidRequest(
        f"search {search_id!r} was already run with a different input: {named}. Repeat "
        "it to resume, or choose a new run_id"
    )


def _check_search(
    base: TrainRequest,
    spec: SearchSpec,
    params: list[dict[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    estimate: dict[str, Any] | None,
) -> None:
    """The whole search's budget, then every candidate's OOB coverage and trial fit."""
    _check_budget(base, spec, len(params), {"estimate": estimate})
    _check_validation_rows(base, spec, len(y))
    for number, candidate in enumerate(params):
        try:
            check_oob_coverage(len(y), candidate, spec.trees_per_round)
        except InvalidRequest as error:
            raise InvalidRequest(f"search candidate c{number:03d}: {error}") from None
    _trial_fits(X, y, base, params, spec)


def _check_validation_rows(base: TrainRequest, spec: SearchSpec, n_train: int) -> None:
    """A regression search scored on a validation split needs 2 rows there (R^2 is undefined
    on one); it holds ``ceil(validation_fraction * n_train)`` of the training rows, as
    scikit-learn's ``train_test_split`` takes them."""
    if spec.metric != "validation" or base.model.task != "regression":
        return
    n_validation = math.ceil(spec.validation_fraction * n_train)
    if n_validation < 2:
        fraction = spec.validation_fraction
        raise InvalidRequest(
            f"search.validation_fraction={fraction:g} of the {n_train} training rows makes "
            f"{n_validation} validation row; a regression candidate's R^2 needs at least 2: "
            f"raise search.validation_fraction to at least {2 / n_train:.2g}, add data, or use "
            "metric 'oob'"
        )


def _trial_fits(
    X: np.ndarray, y: np.ndarray, base: TrainRequest, params: list[dict[str, Any]], spec: SearchSpec
) -> None:
    """Fit each candidate's parameters on the training split (one tree, one level deep:
    cheap), so what scikit-learn checks only against the data (``max_features`` above the
    feature count, ``monotonic_cst`` with several classes...) is refused here, by candidate,
    not in every grove builder."""
    kind, task = base.model.kind, base.model.task
    classes = np.unique(y) if task == "classification" else None
    for number, candidate in enumerate(params):
        stump = {**candidate, "max_depth": 1}
        estimator = make_estimator(kind, task, stump, n_trees=1, seed=0, classes=classes)
        try:
            estimator.fit(X, y)
        except (ValueError, TypeError) as error:
            point = {k: candidate[k] for k in spec.space if k in candidate}
            raise InvalidRequest(
                f"search candidate c{number:03d} {point} does not fit this dataset: {error}"
            ) from None


def _carve_validation(
    bucket: str, search_id: str, source: str, spec: SearchSpec, base: TrainRequest
) -> None:
    """Split the training split again, seeded: candidates fit one part, are scored on the
    other; the holdout stays untouched for the final score."""
    from sklearn.model_selection import train_test_split

    X = read_split(bucket, search_id, "X_train")
    y = read_split(bucket, search_id, "y_train")
    classification = base.model.task == "classification"
    if classification:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:
            raise InvalidDataset(
                "too few rows for a validation split: a class has one training row; "
                "use metric 'oob'"
            )
    try:
        fit, val = train_test_split(
            np.arange(len(y)),
            test_size=spec.validation_fraction,
            random_state=base.seed % 2**32,
            stratify=y if classification else None,
        )
    except ValueError as error:
        raise InvalidDataset(f"search.validation_fraction: {error}") from None
    fit, val = np.sort(fit), np.sort(val)
    parts = {"X_train": X[fit], "y_train": y[fit], "X_test": X[val], "y_test": y[val]}
    for name, array in parts.items():
        storage.put_bytes(bucket, keys.split(source, name), storage.npy_bytes(array))


def _write_candidate(
    bucket: str,
    record: dict[str, Any],
    run_id: str,
    params: dict[str, Any],
    *,
    base: TrainRequest,
    source: str,
) -> None:
    """A candidate's run record (the search's, with its params) and where its split lives."""
    request = _candidate_request(base, run_id, params)
    candidate = {**record, "run_id": run_id, "request": request.to_dict()}
    created = storage.create_json(bucket, keys.request(run_id), candidate)
    if not created and storage.get_json(bucket, keys.request(run_id)) != candidate:
        raise InvalidRequest(
            f"run_id {run_id!r} (a candidate of this search) already holds another run"
        )
    storage.put_json(bucket, keys.split_source(run_id), {"run_id": source})


def _candidate_request(base: TrainRequest, run_id: str, params: dict[str, Any]) -> TrainRequest:
    return replace(base, model=replace(base.model, params=params), run_id=run_id, predict=None)


def _plan_round(
    bucket: str,
    search_id: str,
    document: dict[str, Any],
    number: int,
    builder_reserved_concurrency: int | None,
) -> dict[str, Any]:
    """Write round ``number``'s grove plan (the survivors' groves past last round's)."""
    base = parse_train_request(_base_input(document))
    alive, trees = document["schedule"][number]
    previous = document["schedule"][number - 1][1] if number else 0
    params = {c["run_id"]: c["params"] for c in document["candidates"]}
    plan: list[dict[str, Any]] = []
    for run_id in document["survivors"][:alive]:
        request = replace(_candidate_request(base, run_id, params[run_id]), n_trees=trees)
        full = training.grove_plan(request, run_id)
        plan += training.groves_to_grow(bucket, run_id, full, previous, request.grove_size)
    stage = {"round": number, "stage": "round", "winner": None}
    return _write_plan(bucket, document, plan, stage, base, reserved=builder_reserved_concurrency)


def _base_input(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document["input"].items() if k != "search"}


def _write_plan(
    bucket: str,
    document: dict[str, Any],
    plan: list[dict[str, Any]],
    stage: dict[str, Any],
    base: TrainRequest,
    *,
    reserved: int | None,
) -> dict[str, Any]:
    """Store the search document and the grove plan; the plan's summary for the Map, with
    ``stage`` (``round``, ``stage`` and ``winner``)."""
    search_id = str(base.run_id)
    document = {
        **document,
        "trees_fitted": document["trees_fitted"] + sum(item["n_trees"] for item in plan),
    }
    storage.put_json(bucket, keys.search(search_id), document)
    storage.put_json(bucket, keys.plan(search_id), plan)
    return {
        "run_id": search_id,
        "bucket": bucket,
        "plan_key": keys.plan(search_id),
        "n_groves": len(plan),
        "max_concurrency": fan_out_concurrency(
            base.max_concurrency, items=len(plan), limit=reserved
        ),
        "tolerated_failure_percentage": base.tolerated_failure_percentage,
        **stage,
    }


# ------------------------------------------------------------------------------ the rounds


def score_round(
    event: dict[str, Any], *, bucket: str, builder_reserved_concurrency: int | None = None
) -> dict[str, Any]:
    """Score the round just built, keep the best, and plan the next round or the winner's.

    ``event`` is the round's plan (what :func:`plan_search` or the last call returned).
    Candidates rank by score, ties by candidate number. After the last round the winner's
    remaining groves are planned (``stage="final"``, ``winner`` its run id): with the OOB
    metric it grows to ``n_trees``; with validation it is refit on the whole training split.
    """
    search_id = event["run_id"]
    document = _search_record(bucket, search_id)
    number = int(event["round"])
    base = parse_train_request(_base_input(document))
    alive, trees = document["schedule"][number]
    order = {c["run_id"]: i for i, c in enumerate(document["candidates"])}
    params = {c["run_id"]: c["params"] for c in document["candidates"]}
    scores = dict(document["scores"])
    scored = document["survivors"][:alive]
    for run_id in scored:
        request = replace(_candidate_request(base, run_id, params[run_id]), n_trees=trees)
        score = _score(bucket, document, request, run_id)
        scores[run_id] = [*scores.get(run_id, [])[:number], [trees, score]]
    ranked = sorted(scored, key=lambda r: (search_rank(scores[r][-1][1]), order[r]))
    if scores[ranked[0]][-1][1] is None:
        raise GroveMissing(
            f"round {number}: every candidate lost more groves than "
            f"tolerated_failure_percentage={base.tolerated_failure_percentage:g} allows"
        )
    document = {**document, "scores": scores, "survivors": ranked}
    if number + 1 < len(document["schedule"]):
        return _plan_round(bucket, search_id, document, number + 1, builder_reserved_concurrency)
    winner = ranked[0]
    final = replace(_candidate_request(base, winner, params[winner]), n_trees=base.n_trees)
    grown_from = trees
    if document["spec"]["metric"] == "validation":
        record = storage.get_json(bucket, keys.request(search_id))
        winner = final_id(search_id)
        _write_candidate(bucket, record, winner, params[ranked[0]], base=base, source=search_id)
        final = replace(final, run_id=winner)
        grown_from = 0
    plan = training.groves_to_grow(
        bucket, winner, training.grove_plan(final, winner), grown_from, final.grove_size
    )
    document = {**document, "winner": ranked[0], "model_run_id": winner}
    stage = {"round": number, "stage": "final", "winner": winner}
    return _write_plan(bucket, document, plan, stage, base, reserved=builder_reserved_concurrency)


def _score(
    bucket: str, document: dict[str, Any], request: TrainRequest, run_id: str
) -> float | None:
    """A candidate's score at ``request.n_trees`` trees: OOB accuracy or R^2 (as
    scikit-learn's ``oob_score_``), or accuracy or R^2 on the validation split, from the
    groves that were built; None if more are missing than ``tolerated_failure_percentage``
    allows (counted per candidate: it ranks last)."""
    from concurrent.futures import ThreadPoolExecutor

    record = RunRecord.from_dict(storage.get_json(bucket, keys.request(run_id)))
    classes = record.classes_array()
    source = document["source"]
    groves = _built_groves(bucket, request, run_id)
    if groves is None:
        return None
    with ThreadPoolExecutor(training.GROVE_READERS) as pool:
        if document["spec"]["metric"] == "oob":
            y = read_split(bucket, source, "y_train")
            width = 1 if classes is None else len(classes)

            def oob(item: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray]:
                blob = storage.get_bytes(bucket, keys.grove_oob(run_id, item["grove"]))
                return (item["n_trees"], *read_oob(blob, len(y), width))

            totals = OOBTotals(y_train=y, classes=classes)
            totals.add_all(pool.map(oob, groves), request.n_trees)
            return totals.score()
        blobs = pool.map(
            lambda i: storage.get_bytes(bucket, keys.grove(run_id, i["grove"])), groves
        )
        forest = artifact.Forest.concat([artifact.decode_trees(b) for b in blobs])
    X = read_split(bucket, source, "X_test")
    y = read_split(bucket, source, "y_test")
    if classes is None:
        from sklearn.metrics import r2_score

        return float(r2_score(y, forest.predict(X)))
    return float(np.mean(forest.predict(X) == y))


def _built_groves(bucket: str, request: TrainRequest, run_id: str) -> list[dict[str, Any]] | None:
    """The candidate's planned groves that were built; None if more are missing than its
    ``tolerated_failure_percentage`` allows (counted per candidate, as for a run)."""
    planned = training.grove_plan(request, run_id)
    stored = set(storage.list_keys(bucket, keys.groves_prefix(run_id)))
    built = [item for item in planned if keys.grove(run_id, item["grove"]) in stored]
    missing = len(planned) - len(built)
    allowed = request.tolerated_failure_percentage
    if missing and (100 * missing / len(planned) > allowed or not built):
        telemetry.logger.warning(
            "candidate lost too many groves: ranked last",
            extra={"candidate": run_id, "missing": missing, "planned": len(planned)},
        )
        return None
    return built


def _search_record(bucket: str, search_id: str) -> dict[str, Any]:
    """The search's record, refused by name if another groveflow's version wrote it."""
    key = keys.search(search_id)
    return check_search(storage.get_json(bucket, key), f"s3://{bucket}/{key}")

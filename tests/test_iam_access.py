"""Every file in events/ runs, and IAM is checked against what the functions really touch.

The module runs each example input through the state machines (forests scaled down to a
few groves; everything else as written), plus a resume and a grouped prediction, with
every worker recording its AWS calls. Each call must be allowed by its function's policy
in template.yaml as CloudFormation resolves it, and no grant may reach a kind of object
its function never touches with that action.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from conftest import EVENTS, ROOT, unique_name
from evidence import faults
from groveflow.layout import keys
from groveflow.local import access_log
from groveflow.local.faults import FaultInjector
from groveflow.local.iam import (
    ACCOUNT_ACTIONS,
    Statement,
    allowed,
    function_policies,
    iam_request,
    matches,
)

EVENT_FILES = sorted(p.name for p in EVENTS.glob("*.json"))
SCALED = {  # n_trees, grove_size: a few groves each, to keep the suite quick
    "train-digits.json": (20, 10),
    "train-digits-scored.json": (20, 10),
    "train-diabetes-extra-trees.json": (40, 20),
    "train-parquet-s3.json": (50, 25),
}


def _churn_parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    tenure = rng.integers(1, 72, 300)
    charges = rng.normal(70, 20, 300)
    churned = (tenure < 12) & (charges > 60)
    table = pa.table(
        {
            "customer_id": [f"c{i:04d}" for i in range(300)],
            "tenure": tenure,
            "monthly_charges": charges,
            "churned": churned.astype(np.int64),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _event(engine: Any, name: str, digits_model: str | None) -> dict[str, Any]:
    text = (EVENTS / name).read_text().replace("YOUR-STACK-BUCKET", engine.bucket)
    event: dict[str, Any] = json.loads(text)
    if name in SCALED:
        event["n_trees"], event["grove_size"] = SCALED[name]
    if name == "predict-digits.json":
        assert event["model"] == "digits-demo"  # the README's run id, trained first
        event["model"] = digits_model
    return event


def _wine_csv() -> bytes:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    lines = [",".join([*(n.replace("/", "_") for n in bunch.feature_names), "class"])]
    lines += [
        ",".join([*(repr(float(v)) for v in row), str(label)])
        for row, label in zip(bunch.data, bunch.target, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


# Beyond events/: a resume, a grouped prediction, the stack bucket's datasets/ read through
# the Ingest step (CSV, Parquet) and directly (.npy), by training and by prediction, and a
# prediction repeated under its id after its rows shrank (it replaces its earlier parts).
EXTRA = [
    "resume",
    "grouped",
    "csv-in-bucket",
    "predict-csv-in-bucket",
    "predict-parquet-in-bucket",
    "npy-in-bucket",
    "predict-npy-in-bucket",
    "repeated-prediction",
    "grown",
    "search-oob",
    "search-validation",
]


def _wine_npy(with_target: bool) -> bytes:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    array = np.column_stack([bunch.data, bunch.target]) if with_target else bunch.data
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _grow(run: Any, train: dict[str, Any], run_id: str) -> None:
    """A forest with OOB scores, grown: the merge replaces (deletes) the old model's files."""
    grow = {**train, "model": {"params": {"oob_score": True}}, "run_id": run_id}
    run("grow-first", "TrainStateMachine", grow, run_id)
    run("grown", "TrainStateMachine", {**grow, "n_trees": 6}, run_id)


@pytest.fixture(scope="module")
def recorded(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    record = tmp_path_factory.mktemp("iam") / "calls.jsonl"
    suffix = unique_name("events")
    bucket = engine.bucket
    engine.s3.put_object(Bucket=bucket, Key="datasets/churn/part-0.parquet", Body=_churn_parquet())
    engine.s3.put_object(Bucket=bucket, Key=f"datasets/{suffix}/wine.csv", Body=_wine_csv())
    results: dict[str, Any] = {}
    digits_model = f"digits-demo-{suffix}"

    def run(label: str, machine: str, event: dict[str, Any], run_id: str) -> None:
        results[label] = engine.run(machine, event, name=unique_name(run_id), run_id=run_id)

    order = sorted(EVENT_FILES, key=lambda n: n == "predict-digits.json")  # after its model
    with faults(engine, FaultInjector(record_to=record)):
        for name in order:
            event = _event(engine, name, digits_model)
            if name.startswith("predict"):
                run(name, "PredictStateMachine", event, f"{name[:-5]}-{suffix}")
                continue
            run_id = digits_model if name == "train-digits.json" else f"{name[:-5]}-{suffix}"
            run(name, "TrainStateMachine", {**event, "run_id": run_id}, run_id)
            if name == "train-digits.json":  # the same run again: a resume reads the stored split
                run("resume", "TrainStateMachine", {**event, "run_id": run_id}, run_id)
        predict = _event(engine, "predict-digits.json", digits_model)
        run(
            "grouped",
            "PredictStateMachine",
            {**predict, "trees_per_group": 10},
            f"grouped-{suffix}",
        )
        wine = f"s3://{bucket}/datasets/{suffix}/wine.csv"
        wine_run = f"wine-{suffix}"
        csv_train = {
            "data": {"uri": wine, "target": "class"},
            "n_trees": 4,
            "grove_size": 2,
            "run_id": wine_run,
        }
        run("csv-in-bucket", "TrainStateMachine", csv_train, wine_run)
        csv_predict = {"model": wine_run, "data": {"uri": wine, "exclude": ["class"]}}
        run("predict-csv-in-bucket", "PredictStateMachine", csv_predict, f"pw-{suffix}")
        rows_key = f"datasets/{suffix}/wine-rows.csv"
        engine.s3.put_object(Bucket=bucket, Key=rows_key, Body=_wine_csv())
        again = {
            "model": wine_run,
            "data": {"uri": f"s3://{bucket}/{rows_key}", "exclude": ["class"]},
            "shard_rows": 100,
            "prediction_id": f"pr-{suffix}",
        }
        run("first-prediction", "PredictStateMachine", again, f"pr-{suffix}")
        shorter = b"".join(_wine_csv().splitlines(keepends=True)[:91])  # header + 90 rows
        engine.s3.put_object(Bucket=bucket, Key=rows_key, Body=shorter)
        run("repeated-prediction", "PredictStateMachine", again, f"pr-{suffix}")
        churn = {
            "model": f"train-parquet-s3-{suffix}",
            "data": {
                "uri": f"s3://{bucket}/datasets/churn/",
                "format": "parquet",
                "exclude": ["customer_id", "churned"],
            },
        }
        run("predict-parquet-in-bucket", "PredictStateMachine", churn, f"pc-{suffix}")
        npy_key, npy_run = f"datasets/{suffix}/wine.npy", f"npy-{suffix}"
        engine.s3.put_object(Bucket=bucket, Key=npy_key, Body=_wine_npy(with_target=True))
        engine.s3.put_object(Bucket=bucket, Key=f"{npy_key}-rows.npy", Body=_wine_npy(False))
        npy_train = {
            "data": {"uri": f"s3://{bucket}/{npy_key}"},
            "n_trees": 4,
            "grove_size": 2,
            "run_id": npy_run,
        }
        run("npy-in-bucket", "TrainStateMachine", npy_train, npy_run)
        npy_rows = {"model": npy_run, "data": {"uri": f"s3://{bucket}/{npy_key}-rows.npy"}}
        run("predict-npy-in-bucket", "PredictStateMachine", npy_rows, f"pn-{suffix}")
        _grow(run, npy_train, f"grow-{suffix}")
        # Searches: halving on OOB (.npy), and a grid on a validation split with the winner
        # refit (CSV, through the Ingest step).
        space = {"min_samples_leaf": [1, 3, 5]}
        for metric, strategy, base in (
            ("oob", "halving", npy_train),
            ("validation", "grid", csv_train),
        ):
            search_id = f"s{metric[0]}-{suffix}"
            search = {
                **base,
                "n_trees": 6,
                "run_id": search_id,
                "search": {"space": space, "strategy": strategy, "metric": metric},
            }
            search["search"]["trees_per_round"] = 2
            run(f"search-{metric}", "SearchStateMachine", search, search_id)
    return {"results": results, "calls": access_log.read(record)}


@pytest.mark.parametrize("name", [*EVENT_FILES, *EXTRA])
def test_every_event_file_runs_through_its_state_machine(
    recorded: dict[str, Any], name: str
) -> None:
    result = recorded["results"][name]
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    output = result.output
    if name in ("predict-digits.json", "grouped"):
        assert output["n_rows"] == 1797
    elif name.startswith("predict-"):
        assert output["n_rows"] == {
            "predict-csv-in-bucket": 178,
            "predict-npy-in-bucket": 178,
        }.get(name, 300)
    elif name == "repeated-prediction":
        assert (output["n_rows"], output["n_parts"]) == (90, 1)
    elif name == "train-diabetes-extra-trees.json":
        assert output["metrics"]["r2"] > 0.2
    elif name == "train-parquet-s3.json":
        assert output["metrics"]["accuracy"] > 0.8
        functions = [i.function for i in result.invocations]
        assert functions.index("IngestFunction") < functions.index("PlanFunction")
    else:
        assert output["metrics"]["accuracy"] > 0.8
    if name == "train-digits-scored.json":
        assert output["predictions"]["n_rows"] == 1797


def _policies(engine: Any, **parameters: str) -> dict[str, list[Statement]]:
    return function_policies(
        ROOT, bucket=engine.bucket, stack_name=engine.stack_name, parameters=parameters
    )


def test_every_call_a_function_makes_is_allowed_by_its_policy(
    engine: Any, recorded: dict[str, Any]
) -> None:
    # GIVEN every AWS call each function made in the runs, and the template's policies
    policies = _policies(engine)
    calls = [c for c in recorded["calls"] if c["event"] == "call"]
    assert {c["function"] for c in calls} <= set(policies)
    # THEN each is allowed, as IAM would evaluate it
    denied = sorted(
        {
            f"{c['function']}: {action} {resource}"
            for c in calls
            for action, resource in [iam_request(c)]
            if not allowed(policies[c["function"]], action, resource)
        }
    )
    assert not denied, "AccessDenied on AWS:\n" + "\n".join(denied)


# The kinds of objects in the bucket (src/groveflow/layout.py): a glob and an example key each.
KINDS = {
    "run record": ("runs/*/run.json", keys.request("r")),
    "grove plan": ("runs/*/plan.json", keys.plan("r")),
    "training split": ("runs/*/data/?_train.npy", keys.split("r", "X_train")),
    "test split": ("runs/*/data/?_test.npy", keys.split("r", "X_test")),
    "grove": ("runs/*/groves/*", keys.grove("r", 0)),
    "forest": ("runs/*/model/forest*.gfa", keys.forest("r")),
    "model manifest": ("runs/*/model/manifest.json", keys.manifest("r")),
    "prediction job": ("predictions/*/job.json", keys.predictions_job("p")),
    "shard plan": ("predictions/*/shards.json", keys.predictions_shards("p")),
    "predictions part": ("predictions/*/part-*", keys.predictions_part("p", 0)),
    "predictions manifest": ("predictions/*/manifest.json", keys.predictions_manifest("p")),
    "dataset": ("datasets/*", "datasets/d/part-0.parquet"),
    "converted data": ("converted/*", "converted/e/part-00000.gfcols"),
    "OOB decision": ("runs/*/model/oob*.npy", keys.oob_decision("r")),
    "split source": ("runs/*/data/source.json", keys.split_source("r")),
    "search document": ("runs/*/search.json", keys.search("r")),
}
# Kinds a grant reaches beyond what the runs show, each with why it is kept.
BEYOND_USE = {
    # Merge's ReadRuns is runs/*: its reads (record, plan, test split, groves) share the
    # prefix with the training split and the model, which it never reads.
    ("MergeFunction", "s3:GetObject", "training split"): "ReadRuns is runs/* for brevity",
    ("MergeFunction", "s3:GetObject", "forest"): "ReadRuns is runs/* for brevity",
    ("MergeFunction", "s3:GetObject", "model manifest"): "ReadRuns is runs/* for brevity",
    ("MergeFunction", "s3:GetObject", "grove plan"): "ReadRuns is runs/* for brevity",
    ("MergeFunction", "s3:GetObject", "OOB decision"): "ReadRuns is runs/* for brevity",
    # The score function reads the model's forest and manifest, not its OOB decision function.
    ("ScoreShardFunction", "s3:GetObject", "OOB decision"): "runs/*/model/* for brevity",
    # The builder's ReadRunSplitsAndGroves is runs/*/data/*: it reads only the training split.
    ("BuildGroveFunction", "s3:GetObject", "test split"): "runs/*/data/* for brevity",
    # A run's split source (a search's candidates) shares runs/*/data/* with the split.
    ("PlanFunction", "s3:GetObject", "split source"): "runs/*/data/* for brevity",
    ("PlanFunction", "s3:PutObject", "split source"): "runs/*/data/* for brevity",
    ("SearchPlanFunction", "s3:GetObject", "split source"): "runs/*/data/* for brevity",
    ("SearchPlanFunction", "s3:GetObject", "test split"): "runs/*/data/* for brevity",
    ("ScoreRoundFunction", "s3:GetObject", "split source"): "runs/*/data/* for brevity",
    # Finish's ReadPredictions is predictions/*: it reads the job and the parts only.
    ("FinishPredictionsFunction", "s3:GetObject", "shard plan"): "predictions/* for brevity",
    (
        "FinishPredictionsFunction",
        "s3:GetObject",
        "predictions manifest",
    ): "predictions/* for brevity",
}


def _kind(key: str) -> str:
    for kind, (pattern, _) in KINDS.items():
        if matches(pattern, key):
            return kind
    raise AssertionError(f"a key of no known kind: {key}")


def test_no_grant_reaches_objects_its_function_never_touches(
    engine: Any, recorded: dict[str, Any]
) -> None:
    # GIVEN the kinds of object each function touched with each action in the runs
    policies = _policies(engine)
    used: set[tuple[str, str, str]] = set()
    for call in recorded["calls"]:
        if call["event"] == "call" and call.get("key"):
            action, _ = iam_request(call)
            used.add((call["function"], action, _kind(call["key"])))
    # THEN no granted (action, resource) reaches a kind its function never touched that way,
    # and no grant is a wildcard action or a whole-account resource
    broad = []
    for function, statements in policies.items():
        for statement in (s for s in statements if s.effect == "Allow"):
            assert not any(a.endswith("*") for a in statement.actions), (function, statement)
            # (but an action with no resource type, which only "*" can grant)
            account_wide = set(statement.actions) <= set(ACCOUNT_ACTIONS.values())
            assert "*" not in statement.resources or account_wide, (function, statement)
            if account_wide:
                continue  # reaches no object
            for action in (a for a in statement.actions if a not in ("s3:ListBucket",)):
                for kind, (_, example) in KINDS.items():
                    arn = f"arn:aws:s3:::{engine.bucket}/{example}"
                    reached = any(matches(r, arn) for r in statement.resources)
                    known = (function, action, kind) in BEYOND_USE
                    if reached and (function, action, kind) not in used and not known:
                        broad.append(f"{function} may {action} a {kind} ({example}) but never does")
    assert not broad, "\n".join(broad)


def test_conditional_grants_resolve_as_cloudformation_would(engine: Any) -> None:
    # GIVEN the stack deployed with two data buckets
    plan = _policies(engine, DataBucketNames="data-a,data-b")["PlanFunction"]
    # THEN the plan may list and read both, and nothing else outside the stack's bucket
    for bucket in ("data-a", "data-b"):
        assert allowed(plan, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
        assert allowed(plan, "s3:GetObject", f"arn:aws:s3:::{bucket}/x/part-0.csv")
        assert not allowed(plan, "s3:PutObject", f"arn:aws:s3:::{bucket}/x")
    assert not allowed(plan, "s3:GetObject", "arn:aws:s3:::data-c/x")
    # and with the default (no data buckets) those statements are gone
    default = _policies(engine)["PlanFunction"]
    assert not allowed(default, "s3:GetObject", "arn:aws:s3:::data-a/x")


def test_iam_wildcards_match_as_aws_does() -> None:
    assert matches("arn:aws:s3:::b/runs/*/groves/*", "arn:aws:s3:::b/runs/x/groves/grove-1.gfa")
    assert matches("arn:aws:s3:::b/runs/*", "arn:aws:s3:::b/runs/a/b/c")  # * spans slashes
    assert not matches("arn:aws:s3:::b/runs/*/model/*", "arn:aws:s3:::b/runs/x/groves/g")
    assert matches("s3:get*", "s3:GetObject", ignore_case=True)
    assert not matches("arn:aws:s3:::b/run?", "arn:aws:s3:::b/runs/")

"""Contracts of the state machines, the template and the example inputs, computed from the files.

Every Lambda task in every state machine retries Lambda's own errors, not the user's; throttles
have a retrier of their own with a budget of at least five minutes; out-of-memory kills are
retried at most once, crashes and timeouts of a Map's child often enough to outlast a 7-in-8
failure rate, within minutes; every stage ends in a named
Fail state when it fails; every Distributed Map writes its results with a ResultWriter the
state machine's role may write; every ARN names its partition through ``${AWS::Partition}``;
every file in events/ is a valid request."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from groveflow.local.template import read_template

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
}
THROTTLE = "Lambda.TooManyRequestsException"
# Lambda adds at most 1,000 execution environments per function every 10 s, and an account
# often has far less free concurrency than a Map's MaxConcurrency: throttled children must
# wait minutes, not the minute six capped attempts give.
THROTTLE_BUDGET_SECONDS = 300
# Failures that come back the same on a retry: a grove that ran out of memory will run out
# again at the same memory (billed each time). Lambda.Unknown is what Step Functions reports
# when Lambda gives no error type, most often a runtime killed over its memory.
DETERMINISTIC_ERRORS = {"Runtime.OutOfMemory", "Lambda.Unknown"}
# Failures that are often transient (a host lost, a noisy neighbour): a Map's child retries
# them on a retrier of their own, until a child whose attempts fail 7 times in 8 (STRATA,
# Middleware 2024: 70 % of executions failing, less the throttles retried apart) is lost
# with a probability of at most TRANSIENT_LOSS, and within TRANSIENT_WAIT_SECONDS of waits.
TRANSIENT_ERRORS = {"Runtime.ExitError", "Sandbox.Timedout"}
TRANSIENT_FAILURE_RATE = 7 / 8
TRANSIENT_LOSS = 1e-3
TRANSIENT_WAIT_SECONDS = 600
# Errors a user causes: retrying them only delays the same failure.
USER_ERRORS = {
    "States.ALL",
    "States.TaskFailed",
    "InvalidRequest",
    "InvalidDataset",
    "GroveMissing",
}
MACHINES = sorted((ROOT / "statemachine").glob("*.asl.json"))
TEMPLATE = ROOT / "template.yaml"
LAMBDA_INVOKE = "arn:${Partition}:states:::lambda:invoke"
RESULT_WRITER_ACTIONS = {
    "s3:PutObject",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
}


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every state with the states beside it, descending into Map processors."""
    for name, state in states.items():
        yield name, state, states
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor["States"])


def _tasks(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    definition = json.loads(path.read_text())
    return [
        (n, s, siblings) for n, s, siblings in _states(definition["States"]) if s["Type"] == "Task"
    ]


def retry_wait_seconds(rule: dict[str, Any]) -> float:
    """The expected total wait (in seconds) of a retrier that retries until MaxAttempts.

    Step Functions waits ``min(MaxDelaySeconds, IntervalSeconds * BackoffRate ** (n - 1))``
    before the n-th retry; with ``"JitterStrategy": "FULL"`` the wait is drawn uniformly
    between 0 and that, so its expected value is half of it. The expected wait is what is
    counted (the most a run can wait is twice that; the least, under full jitter, is 0).
    Defaults are the States Language's: 1 s, rate 2.0, 3 attempts, no cap, no jitter.
    """
    interval = rule.get("IntervalSeconds", 1)
    rate = rule.get("BackoffRate", 2.0)
    cap = rule.get("MaxDelaySeconds", float("inf"))
    scale = 0.5 if rule.get("JitterStrategy") == "FULL" else 1.0
    return sum(
        scale * min(cap, interval * rate**attempt) for attempt in range(rule.get("MaxAttempts", 3))
    )


def _map_children(path: Path) -> set[str]:
    """Names of the Tasks that run inside a Map's ItemProcessor."""
    definition = json.loads(path.read_text())
    return {
        name
        for _, state, _ in _states(definition["States"])
        for name in (state.get("ItemProcessor") or state.get("Iterator") or {}).get("States", {})
    }


def _transient_findings(name: str, retry: list[dict[str, Any]]) -> list[str]:
    """A Map child's crashes and timeouts: a retrier of their own, enough attempts to
    outlast TRANSIENT_FAILURE_RATE, capped jittered waits within TRANSIENT_WAIT_SECONDS."""
    rules = [r for r in retry if TRANSIENT_ERRORS & set(r["ErrorEquals"])]
    if [set(r["ErrorEquals"]) for r in rules] != [TRANSIENT_ERRORS]:
        return [f"{name}: {sorted(TRANSIENT_ERRORS)} not retried by a retrier of their own"]
    (rule,) = rules
    findings = []
    attempts = rule.get("MaxAttempts", 3) + 1
    lost = TRANSIENT_FAILURE_RATE**attempts
    if lost > TRANSIENT_LOSS:
        findings.append(
            f"{name}: crashes and timeouts get {attempts} attempts: a child failing 7 in 8 "
            f"is lost with probability {lost:.3f}, more than {TRANSIENT_LOSS}"
        )
    waited = retry_wait_seconds(rule)
    if rule.get("JitterStrategy") != "FULL" or waited > TRANSIENT_WAIT_SECONDS:
        findings.append(
            f"{name}: crashes and timeouts wait {waited:.0f} s on average "
            f"(at most {TRANSIENT_WAIT_SECONDS} s, with full jitter)"
        )
    return findings


def retry_findings(path: Path) -> list[str]:
    """Throttles retried for at least THROTTLE_BUDGET_SECONDS by a retrier of their own;
    deterministic errors retried at most once; a Map child's crashes and timeouts retried
    as :func:`_transient_findings` says."""
    findings = []
    children = _map_children(path)
    for name, task, _ in _tasks(path):
        if name in children:
            findings += _transient_findings(name, task["Retry"])
        throttles = [r for r in task["Retry"] if THROTTLE in r["ErrorEquals"]]
        if [r["ErrorEquals"] for r in throttles] != [[THROTTLE]]:
            findings.append(f"{name}: no retrier of its own for {THROTTLE}")
        for rule in throttles:
            waited = retry_wait_seconds(rule)
            if waited < THROTTLE_BUDGET_SECONDS:
                findings.append(
                    f"{name}: throttles are retried for {waited:.0f} s on average, "
                    f"less than {THROTTLE_BUDGET_SECONDS} s"
                )
        for rule in task["Retry"]:
            deterministic = sorted(DETERMINISTIC_ERRORS & set(rule["ErrorEquals"]))
            if deterministic and rule.get("MaxAttempts", 3) > 1:
                findings.append(f"{name}: {deterministic} retried {rule['MaxAttempts']} times")
    return findings


def _role_statements(template: dict[str, Any], machine: str) -> Iterator[dict[str, Any]]:
    for policy in template["Resources"][machine]["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                yield from (s for s in statement["Fn::If"][1:] if "Effect" in s)
            else:
                yield statement


def _resources(statement: dict[str, Any]) -> list[str]:
    values = statement["Resource"]
    values = values if isinstance(values, list) else [values]
    return [v["Fn::Sub"] if isinstance(v, dict) and "Fn::Sub" in v else str(v) for v in values]


def _writer_findings(where: str, writer: dict[str, Any] | None) -> tuple[list[str], str | None]:
    """What is wrong with one Map's ResultWriter, and a key it writes (None if unknown)."""
    if writer is None:
        return [f"{where}: a Distributed Map without a ResultWriter"], None
    findings = []
    if writer.get("Resource") != "arn:${Partition}:states:::s3:putObject":
        findings.append(f"{where}: ResultWriter does not write to S3")
    parameters = writer.get("Parameters", {})
    if parameters.get("Bucket.$") not in PLAN_BUCKETS:
        findings.append(f"{where}: results go to a bucket not the plan's")
    prefix = re.fullmatch(r"States\.Format\('([^']*)', \$[.\w]+\)", parameters.get("Prefix.$", ""))
    # map-results/ (a prefix a lifecycle rule can expire: S3's rules match a key's start only),
    # then the run's or prediction's own id
    own = r"map-results/(runs|predictions)/\{\}/[\w/-]+"
    if prefix is None or not re.fullmatch(own, prefix[1]):
        return [*findings, f"{where}: results are not under map-results/ and a run's own id"], None
    if "/groves" in prefix[1]:
        findings.append(f"{where}: results land among the groves")
    return findings, "${ModelBucket.Arn}/" + prefix[1].replace("{}", "run-1") + "/0/manifest.json"


PLAN_BUCKETS = ("$.plan.bucket", "$.shards.bucket", "$.scoring.shards.bucket")


def result_writer_findings(template_path: Path) -> list[str]:
    """Every DISTRIBUTED Map writes its results with ResultWriter (s3:putObject) under a run's
    or a prediction's prefix, outside groves/, into the stack's bucket, and its state
    machine's role has the ResultWriter permissions on that prefix."""
    template = read_template(template_path)
    findings = []
    for machine, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        asl = template_path.parent / resource["Properties"]["DefinitionUri"]
        granted: dict[str, set[str]] = {}
        for statement in _role_statements(template, machine):
            actions = statement["Action"]
            for action in actions if isinstance(actions, list) else [actions]:
                granted.setdefault(action, set()).update(_resources(statement))
        for name, state, _ in _states(json.loads(asl.read_text())["States"]):
            config = state.get("ItemProcessor", {}).get("ProcessorConfig", {})
            if state["Type"] != "Map" or config.get("Mode") != "DISTRIBUTED":
                continue
            found, key = _writer_findings(f"{machine}.{name}", state.get("ResultWriter"))
            findings += found
            for action in sorted(RESULT_WRITER_ACTIONS) if key else ():
                if not any(fnmatch.fnmatchcase(str(key), g) for g in granted.get(action, ())):
                    findings.append(f"{machine}: {action} not granted on {key}")
    return findings


_ARN = re.compile(r"arn:(\$\{[^}]*\}|[^:]*):")
# ${AWS::Partition} in the template, ${Partition} (its DefinitionSubstitution) in the ASL,
# [a-z-]+ in a parameter's AllowedPattern, and "*" in the data buckets' S3 ARNs, which are
# built by Fn::Join whose delimiter cannot hold ${AWS::Partition} (template.yaml says why).
PARTITIONS = {"${AWS::Partition}", "${Partition}", "[a-z-]+", "*"}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def partition_findings(template_path: Path) -> list[str]:
    """Every ARN written in the template or an ASL file names its partition by substitution."""
    template = read_template(template_path)
    documents: list[tuple[str, Any]] = [(template_path.name, template)]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            asl = template_path.parent / resource["Properties"]["DefinitionUri"]
            documents.append((asl.name, json.loads(asl.read_text())))
    findings = []
    for name, document in documents:
        for text in _strings(document):
            for partition in _ARN.findall(text):
                if partition not in PARTITIONS:
                    findings.append(f"{name}: {text!r} names the partition {partition!r}")
                elif partition == "*" and ":s3:::" not in text:
                    findings.append(f"{name}: {text!r} matches every partition")
    return findings


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_every_task_retries_lambda_errors_with_capped_jittered_backoff(path: Path) -> None:
    tasks = _tasks(path)
    assert tasks
    for name, task, _ in tasks:
        assert task["Resource"] == LAMBDA_INVOKE, name
        assert 0 < task["TimeoutSeconds"] <= 1000, name
        service = [r for r in task["Retry"] if set(r["ErrorEquals"]) >= LAMBDA_ERRORS]
        assert len(service) == 1, name
        assert service[0]["JitterStrategy"] == "FULL", name
        assert service[0]["BackoffRate"] > 1 and service[0]["MaxDelaySeconds"] > 0, name
        retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
        assert not retried & USER_ERRORS, (name, retried & USER_ERRORS)


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_every_stage_catches_into_a_named_fail_state(path: Path) -> None:
    definition = json.loads(path.read_text())
    top = definition["States"]
    for name, state in top.items():
        if state["Type"] not in {"Task", "Map"}:
            continue
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        fail = top[catch["Next"]]
        assert fail["Type"] == "Fail", name
        assert catch["Next"].endswith("Failed"), name
        assert (fail["ErrorPath"], fail["CausePath"]) == ("$.Error", "$.Cause"), name


@pytest.mark.parametrize("path", MACHINES, ids=[p.name for p in MACHINES])
def test_throttles_wait_five_minutes_and_out_of_memory_retries_at_most_once(
    path: Path,
) -> None:
    assert retry_findings(path) == []


def test_every_map_child_retries_crashes_and_timeouts_apart_from_out_of_memory() -> None:
    children = [(path, name) for path in MACHINES for name in sorted(_map_children(path))]
    assert {name for _, name in children} == {"BuildGrove", "ScoreShard"}
    for path, name in children:
        (task,) = [t for n, t, _ in _tasks(path) if n == name]
        assert _transient_findings(name, task["Retry"]) == [], path.name


def test_the_retry_wait_is_the_expected_full_jitter_wait() -> None:
    # 1, 2, 4, 8 capped at 5: 1 + 2 + 4 + 5 = 12 s in the worst case, 6 s expected
    rule = {"IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 4, "MaxDelaySeconds": 5}
    assert retry_wait_seconds(rule) == 12
    assert retry_wait_seconds({**rule, "JitterStrategy": "FULL"}) == 6


def _broken_copy(tmp_path: Path, edit: Any) -> Path:
    """A copy of the project's template and ASL, with ``edit`` applied to train.asl.json."""
    (tmp_path / "statemachine").mkdir()
    (tmp_path / "template.yaml").write_text(TEMPLATE.read_text())
    for path in MACHINES:
        definition = json.loads(path.read_text())
        if path.name == "train.asl.json":
            edit(definition)
        (tmp_path / "statemachine" / path.name).write_text(json.dumps(definition))
    return tmp_path / "statemachine" / "train.asl.json"


def _build_grove(definition: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = definition["States"]["BuildGroves"]["ItemProcessor"]["States"][
        "BuildGrove"
    ]
    return state


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (
            lambda d: _build_grove(d)["Retry"][1].update(MaxAttempts=6, MaxDelaySeconds=30),
            "throttles are retried for 30 s on average",
        ),
        (
            lambda d: _build_grove(d)["Retry"][2].update(MaxAttempts=3),
            "retried 3 times",
        ),
        (
            lambda d: _build_grove(d)["Retry"][0]["ErrorEquals"].append(THROTTLE),
            "no retrier of its own",
        ),
        (
            lambda d: _build_grove(d)["Retry"][3].update(MaxAttempts=5),
            "lost with probability 0.449",
        ),
        (
            lambda d: _build_grove(d)["Retry"][3].update(MaxDelaySeconds=30),
            "crashes and timeouts wait 840 s on average",
        ),
        (
            lambda d: _build_grove(d)["Retry"][2]["ErrorEquals"].append("Runtime.ExitError"),
            "not retried by a retrier of their own",
        ),
    ],
)
def test_the_retry_contract_fails_on_a_broken_copy(tmp_path: Path, edit: Any, finding: str) -> None:
    broken = _broken_copy(tmp_path, edit)
    assert any(finding in f for f in retry_findings(broken)), retry_findings(broken)


def test_every_distributed_map_writes_its_results_where_its_role_may_write() -> None:
    assert result_writer_findings(TEMPLATE) == []


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (
            lambda d: d["States"]["BuildGroves"].pop("ResultWriter"),
            "TrainStateMachine.BuildGroves: a Distributed Map without a ResultWriter",
        ),
        (
            lambda d: d["States"]["BuildGroves"]["ResultWriter"]["Parameters"].update(
                {"Prefix.$": "States.Format('map-results/runs/{}/groves/results', $.plan.run_id)"}
            ),
            "TrainStateMachine.BuildGroves: results land among the groves",
        ),
        (
            lambda d: d["States"]["ScoreShards"]["ResultWriter"]["Parameters"].update(
                {"Prefix.$": "States.Format('elsewhere/{}/results', $.plan.run_id)"}
            ),
            "TrainStateMachine.ScoreShards: results are not under map-results/ and a run's own id",
        ),
    ],
)
def test_the_result_writer_contract_fails_on_a_broken_copy(
    tmp_path: Path, edit: Any, finding: str
) -> None:
    _broken_copy(tmp_path, edit)
    assert finding in result_writer_findings(tmp_path / "template.yaml")


def test_the_result_writer_contract_fails_without_the_role_permission(tmp_path: Path) -> None:
    _broken_copy(tmp_path, lambda d: None)
    template = tmp_path / "template.yaml"
    text = re.sub(r"\n *- s3:AbortMultipartUpload\n", "\n", template.read_text(), count=1)
    template.write_text(text)
    assert "TrainStateMachine: s3:AbortMultipartUpload not granted on " in " ".join(
        result_writer_findings(template)
    )


def test_every_arn_is_partition_aware() -> None:
    assert partition_findings(TEMPLATE) == []


def test_the_partition_contract_fails_on_a_hard_coded_partition(tmp_path: Path) -> None:
    _broken_copy(
        tmp_path, lambda d: d["States"]["Plan"].update(Resource="arn:aws:states:::lambda:invoke")
    )
    template = tmp_path / "template.yaml"
    template.write_text(template.read_text().replace("arn:${AWS::Partition}:", "arn:aws-cn:", 1))
    findings = partition_findings(template)
    assert any(f.startswith("train.asl.json: 'arn:aws:states") for f in findings), findings
    assert any("names the partition 'aws-cn'" in f for f in findings), findings


def test_redrive_is_not_granted_and_the_docs_say_how_to_resume() -> None:
    # The Maps' Catch ends in a Fail state, so a redrive would rerun only that state: the
    # way to resume is a new execution with the same run_id (groves already stored are
    # reused; tests/test_reliability.py::test_resume_builds_only_missing_groves_...).
    template = read_template(TEMPLATE)
    assert "states:RedriveExecution" not in json.dumps(template)
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "new execution with the same `run_id`" in deploy


def test_the_contract_check_fails_on_a_task_that_retries_everything(tmp_path: Path) -> None:
    # GIVEN a copy of the train machine whose Plan retries every error
    definition = json.loads((ROOT / "statemachine" / "train.asl.json").read_text())
    definition["States"]["Plan"]["Retry"].append({"ErrorEquals": ["States.ALL"], "MaxAttempts": 3})
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(definition))
    # THEN the check above rejects it
    with pytest.raises(AssertionError):
        test_every_task_retries_lambda_errors_with_capped_jittered_backoff(broken)


EVENTS = sorted((ROOT / "events").glob("*.json"))


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_every_example_input_is_a_valid_request(path: Path) -> None:
    from groveflow.prediction import parse_predict_request
    from groveflow.request import parse_train_request

    value = json.loads(path.read_text())
    if path.name.startswith("predict-"):
        parse_predict_request(value)
    else:
        parse_train_request(value)


# ------------------------------------------------------------ timeouts and expiry (issue 28)

LAMBDA_MAX_TIMEOUT_SECONDS = 900
# Functions whose work does not grow with the data, and why; every other one gets Lambda's
# longest timeout (a timeout costs nothing when the work ends sooner).
FIXED_SIZE_WORK = {"ValidateRequestFunction": "checks the request; reads no data"}


def _function_timeouts(template: dict[str, Any]) -> dict[str, int]:
    """Each function's Timeout (in seconds): its own, else the Globals', else Lambda's 3."""
    default = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    return {
        logical_id: int(resource["Properties"].get("Timeout", default))
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def timeout_findings(template_path: Path) -> list[str]:
    """Every function whose work grows with the data has Timeout 900, and every Task that
    invokes a function waits for it: its ``TimeoutSeconds`` is above the function's Timeout
    (so a Lambda timeout reaches the Retry as ``Sandbox.Timedout``, not ``States.Timeout``)."""
    template = read_template(template_path)
    timeouts = _function_timeouts(template)
    findings = [
        f"{function}: Timeout {seconds}, not {LAMBDA_MAX_TIMEOUT_SECONDS}"
        for function, seconds in timeouts.items()
        if function not in FIXED_SIZE_WORK and seconds != LAMBDA_MAX_TIMEOUT_SECONDS
    ]
    for machine, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        substitutions = resource["Properties"]["DefinitionSubstitutions"]
        asl = template_path.parent / resource["Properties"]["DefinitionUri"]
        for name, state, _ in _tasks(asl):
            placeholder = re.fullmatch(
                r"\$\{(\w+)\}", str(state.get("Parameters", {}).get("FunctionName", ""))
            )
            if placeholder is None:
                continue
            function = substitutions[placeholder[1]]["Fn::GetAtt"][0]
            waits = state.get("TimeoutSeconds")
            if waits is None or waits <= timeouts[function]:
                findings.append(
                    f"{machine}.{name}: TimeoutSeconds {waits} is not above "
                    f"{function}'s Timeout {timeouts[function]}"
                )
    return findings


def test_work_that_grows_with_the_data_gets_900_seconds_and_each_task_waits_longer() -> None:
    assert timeout_findings(TEMPLATE) == []


def test_the_timeout_contract_fails_on_a_task_that_stops_waiting_first(tmp_path: Path) -> None:
    # GIVEN a copy whose Plan task stops waiting at 600 s, below the plan's 900 s
    _broken_copy(tmp_path, lambda d: d["States"]["Plan"].update({"TimeoutSeconds": 600}))
    # THEN the contract names it
    assert "TrainStateMachine.Plan: TimeoutSeconds 600 is not above PlanFunction's Timeout 900" in (
        timeout_findings(tmp_path / "template.yaml")
    )


def test_the_timeout_contract_fails_on_a_short_function_timeout(tmp_path: Path) -> None:
    _broken_copy(tmp_path, lambda d: None)
    template = tmp_path / "template.yaml"
    text = template.read_text().replace(
        "      CodeUri: functions/finish_predictions/\n",
        "      CodeUri: functions/finish_predictions/\n      Timeout: 300\n",
    )
    template.write_text(text)
    assert "FinishPredictionsFunction: Timeout 300, not 900" in timeout_findings(template)


def _expiring_prefixes(template: dict[str, Any]) -> dict[str, Any]:
    """The stack bucket's lifecycle rules that expire current objects: prefix -> days."""
    rules = template["Resources"]["ModelBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    return {
        rule.get("Prefix", rule.get("Filter", {}).get("Prefix", "")): rule["ExpirationInDays"]
        for rule in rules
        if rule.get("Status") == "Enabled" and "ExpirationInDays" in rule
    }


def lifecycle_findings(template_path: Path) -> list[str]:
    """The intermediate objects expire and nothing else does: each prefix Ingest writes
    (its role's PutObject grants) and each ResultWriter prefix of the ASL lies under an
    expiring lifecycle rule, and no rule reaches a run's or a prediction's own objects."""
    template = read_template(template_path)
    expiring = _expiring_prefixes(template)
    findings = [
        f"ModelBucket: a lifecycle rule expires {prefix!r}, where runs or predictions live"
        for prefix in expiring
        if "runs/".startswith(prefix) or "predictions/".startswith(prefix)
    ]
    written: list[tuple[str, str]] = []
    policies = template["Resources"]["IngestFunction"]["Properties"]["Policies"]
    for statement in policies[0]["Statement"]:
        if isinstance(statement, dict) and statement.get("Action") == "s3:PutObject":
            for resource in _resources(statement):
                written.append(("IngestFunction", resource.split("}/", 1)[1].rstrip("*")))
    for machine, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        asl = template_path.parent / resource["Properties"]["DefinitionUri"]
        for name, state, _ in _states(json.loads(asl.read_text())["States"]):
            prefix = state.get("ResultWriter", {}).get("Parameters", {}).get("Prefix.$", "")
            literal = re.match(r"States\.Format\('([^'{]*)", prefix)
            if prefix:
                written.append((f"{machine}.{name}", literal[1] if literal else ""))
    for writer, prefix in written:
        if not any(prefix.startswith(rule) for rule in expiring):
            findings.append(f"{writer}: writes under {prefix!r}, which no lifecycle rule expires")
    return findings


def test_lifecycle_rules_expire_what_ingest_and_result_writer_write() -> None:
    # GIVEN the bucket's expiring rules, stated in days by a parameter
    template = read_template(TEMPLATE)
    expiring = _expiring_prefixes(template)
    assert set(expiring) == {"converted/", "map-results/"}
    days = {rule["Ref"] for rule in expiring.values()}
    assert days == {"IntermediateObjectDays"}
    assert template["Parameters"]["IntermediateObjectDays"]["Default"] == 7
    # THEN they match where Ingest and every ResultWriter write, and nothing of a run's own
    assert lifecycle_findings(TEMPLATE) == []


def test_the_lifecycle_contract_fails_on_results_written_elsewhere(tmp_path: Path) -> None:
    _broken_copy(
        tmp_path,
        lambda d: d["States"]["BuildGroves"]["ResultWriter"]["Parameters"].update(
            {"Prefix.$": "States.Format('runs/{}/map-results', $.plan.run_id)"}
        ),
    )
    assert (
        "TrainStateMachine.BuildGroves: writes under 'runs/', which no lifecycle rule expires"
        in lifecycle_findings(tmp_path / "template.yaml")
    )

"""Contract and hardening checks of template.yaml and the ASL definitions: offline and fast.

Each check is a function returning findings (a list of strings), so the same check proves the real
files clean and proves that known-bad copies in ``tests/fixtures/bad/`` are caught.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs
from samtranslator.translator.transform import transform
from statelint.linter import Linter

from groveflow.local.template import read_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
BAD = ROOT / "tests" / "fixtures" / "bad"
ASL_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))
SAM = ROOT / ".venv-sam" / "bin" / "sam"
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
REGION = "us-east-1"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

# statelint 3.1.0 predates two fields AWS accepts (cfn-lint's newer schema checks both):
# a Map's "Label" (2023) and ItemReader.ReaderConfig "InputType": "JSON" (2024).
STATELINT_OUTDATED = (
    re.compile(r'^Field "Label" not allowed in .*\.States\.[A-Za-z]+$'),
    re.compile(r'^Field "InputType" not allowed in .*\.ItemReader\.ReaderConfig$'),
)

# What each function's role may do in the stack's bucket (src/groveflow/layout.py's keys).
BUCKET = "${ModelBucket.Arn}"
EXPECTED_S3 = {
    "PlanFunctionRole": {
        "s3:ListBucket": {BUCKET, "<DataBucketNames>"},
        "s3:GetObject": {
            f"{BUCKET}/datasets/*",
            f"{BUCKET}/converted/*",
            f"{BUCKET}/runs/*/run.json",
            # is the run id a search's, or a part of one? (refused by name)
            f"{BUCKET}/runs/*/search.json",
            f"{BUCKET}/runs/*/data/*",
            "<DataBucketNames>/*",
        },
        "s3:PutObject": {
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/plan.json",
            f"{BUCKET}/runs/*/data/*",
        },
    },
    "BuildGroveFunctionRole": {
        "s3:ListBucket": {BUCKET},
        "s3:GetObject": {
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/data/*",
            f"{BUCKET}/runs/*/groves/*",
        },
        "s3:PutObject": {f"{BUCKET}/runs/*/groves/*"},
    },
    "MergeFunctionRole": {
        "s3:ListBucket": {BUCKET},
        "s3:GetObject": {f"{BUCKET}/runs/*"},
        "s3:PutObject": {f"{BUCKET}/runs/*/model/*"},
        # a grown model's replaced files, once its new manifest is stored
        "s3:DeleteObject": {
            f"{BUCKET}/runs/*/model/forest*.gfa",
            f"{BUCKET}/runs/*/model/oob*.npy",
        },
    },
    "PlanPredictionsFunctionRole": {
        "s3:ListBucket": {BUCKET, "<DataBucketNames>"},
        "s3:GetObject": {
            f"{BUCKET}/datasets/*",
            f"{BUCKET}/converted/*",
            f"{BUCKET}/runs/*/model/manifest.json",
            f"{BUCKET}/runs/*/model/forest*.gfa",
            f"{BUCKET}/runs/*/groves/*",
            f"{BUCKET}/predictions/*/job.json",
            "<DataBucketNames>/*",
        },
        "s3:PutObject": {
            f"{BUCKET}/predictions/*/job.json",
            f"{BUCKET}/predictions/*/shards.json",
        },
        "s3:DeleteObject": {
            f"{BUCKET}/predictions/*/manifest.json",
            f"{BUCKET}/predictions/*/part-*",
        },
    },
    "ScoreShardFunctionRole": {
        "s3:ListBucket": {BUCKET, "<DataBucketNames>"},
        "s3:GetObject": {
            f"{BUCKET}/datasets/*",
            f"{BUCKET}/converted/*",
            f"{BUCKET}/predictions/*/job.json",
            f"{BUCKET}/runs/*/model/*",
            f"{BUCKET}/runs/*/groves/*",
            "<DataBucketNames>/*",
        },
        "s3:PutObject": {f"{BUCKET}/predictions/*/part-*"},
    },
    "IngestFunctionRole": {
        "s3:ListBucket": {BUCKET, "<DataBucketNames>"},
        "s3:GetObject": {f"{BUCKET}/datasets/*", "<DataBucketNames>/*"},
        "s3:PutObject": {f"{BUCKET}/converted/*"},
    },
    "FinishPredictionsFunctionRole": {
        "s3:ListBucket": {BUCKET},
        "s3:GetObject": {f"{BUCKET}/predictions/*"},
        "s3:PutObject": {f"{BUCKET}/predictions/*/manifest.json"},
    },
    # Checks a request before conversion: reads and writes nothing.
    "ValidateRequestFunctionRole": {},
    "SearchPlanFunctionRole": {
        "s3:ListBucket": {BUCKET, "<DataBucketNames>"},
        "s3:GetObject": {
            f"{BUCKET}/datasets/*",
            f"{BUCKET}/converted/*",
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/search.json",
            f"{BUCKET}/runs/*/data/*",
            "<DataBucketNames>/*",
        },
        "s3:PutObject": {
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/plan.json",
            f"{BUCKET}/runs/*/search.json",
            f"{BUCKET}/runs/*/data/*",
        },
    },
    # Reads the round's OOB sums or groves; writes the next round's plan (and the refit's record).
    "ScoreRoundFunctionRole": {
        "s3:ListBucket": {BUCKET},
        "s3:GetObject": {
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/search.json",
            f"{BUCKET}/runs/*/data/*",
            f"{BUCKET}/runs/*/groves/*",
        },
        "s3:PutObject": {
            f"{BUCKET}/runs/*/run.json",
            f"{BUCKET}/runs/*/plan.json",
            f"{BUCKET}/runs/*/search.json",
            f"{BUCKET}/runs/*/data/source.json",
        },
    },
}
# What a state machine's Distributed Maps read with ItemReader.
ITEM_PLANS = {f"{BUCKET}/runs/*/plan.json", f"{BUCKET}/predictions/*/shards.json"}
# Where they write with ResultWriter, and the actions Step Functions' "IAM policies for
# ResultWriter" lists for it.
MAP_RESULTS = {f"{BUCKET}/map-results/runs/*", f"{BUCKET}/map-results/predictions/*"}
RESULT_WRITER_ACTIONS = {
    "s3:PutObject",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
}
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# Actions with no resource-level permissions, where AWS requires Resource "*".
RESOURCE_STAR_ACTIONS = re.compile(
    r"^(logs:(Create|Get|Update|Delete|List)LogDelivery|logs:ListLogDeliveries"
    r"|logs:PutResourcePolicy|logs:DescribeResourcePolicies"
    r"|logs:DescribeLogGroups|xray:[A-Za-z]+|lambda:GetAccountSettings)$"
)


# ------------------------------------------------------------------------------------- checkers


def _cfn_lint_outdated(match: Any, template: dict[str, Any]) -> bool:
    """cfn-lint 1.58.0's ASL schema refuses InputPath/OutputPath on a Succeed state, which the
    States Language allows (statelint accepts it): the one cfn-lint match we set aside."""
    path = list(getattr(match, "path", []))
    if match.rule.id != "E3601" or not path or path[-1] not in ("InputPath", "OutputPath"):
        return False
    node: Any = template
    for step in path[:-1]:
        node = node[step] if isinstance(node, dict) else node[int(step)]
    return isinstance(node, dict) and node.get("Type") == "Succeed"


def cfn_lint_findings(template_text: str) -> list[str]:
    """Every cfn-lint match (errors, warnings and informational) for a template's text."""
    matches = lint(template_text, config=ManualArgs(regions=[REGION]))
    parsed = json.loads(template_text) if template_text.lstrip().startswith("{") else {}
    return [
        f"{m.rule.id} line {m.linenumber}: {m.message}"
        for m in matches
        if not (parsed and _cfn_lint_outdated(m, parsed))
    ]


def fake_arn(name: str) -> str:
    """A well-formed stand-in for a ``${Name}`` placeholder's value (``${Partition}``: aws)."""
    if name == "Partition":
        return "aws"
    return f"arn:aws:lambda:{REGION}:123456789012:function:{name.removesuffix('Arn')}"


def asl_findings(definition_text: str) -> list[str]:
    """statelint (graph: dangling Next, unreachable or missing terminal states) plus cfn-lint on a
    generated template whose AWS::StepFunctions::StateMachine holds the definition (schema)."""
    substituted = PLACEHOLDER.sub(lambda m: fake_arn(m.group(1)), definition_text)
    definition = json.loads(substituted)
    findings = [
        f"statelint: {problem}"
        for problem in Linter.validate(definition)
        if not any(p.match(problem) for p in STATELINT_OUTDATED)
    ]
    wrapper = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "StateMachine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": f"arn:aws:iam::123456789012:role/{'x' * 8}",
                    "Definition": definition,
                },
            }
        },
    }
    findings += [f"cfn-lint: {f}" for f in cfn_lint_findings(json.dumps(wrapper, indent=1))]
    return findings


def asl_validator_findings(definition_text: str, tmp_path: Path) -> list[str]:
    """What asl-validator (the npm package, installed by `make install`) says of a definition
    whose placeholders are substituted; empty when it finds it valid."""
    assert ASL_VALIDATOR.exists(), "asl-validator is not installed: run `make install` (npm ci)"
    substituted = PLACEHOLDER.sub(lambda m: fake_arn(m.group(1)), definition_text)
    path = tmp_path / "definition.asl.json"
    path.write_text(substituted)
    done = subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    return [] if done.returncode == 0 and "is valid" in output else [output]


def _referenced_resources(node: Any) -> Iterator[str]:
    """Logical ids (or parameters) that a Ref, GetAtt or Sub names."""
    if isinstance(node, dict):
        if "Ref" in node:
            yield node["Ref"]
        elif "Fn::GetAtt" in node:
            yield node["Fn::GetAtt"][0]
        elif "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):
            for name in re.findall(r"\$\{([^}!]+)\}", node["Fn::Sub"]):
                yield name.split(".")[0]
        else:
            for value in node.values():
                yield from _referenced_resources(value)


def substitution_findings(template_path: Path) -> list[str]:
    """Every ASL placeholder has a DefinitionSubstitution and vice versa, and each substitution
    names a resource (or parameter) the template declares."""
    template = read_template(template_path)
    declared = set(template.get("Resources", {})) | set(template.get("Parameters", {}))
    findings = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = resource.get("Properties", {})
        asl_path = (template_path.parent / props["DefinitionUri"]).resolve()
        placeholders = set(PLACEHOLDER.findall(asl_path.read_text()))
        substitutions = props.get("DefinitionSubstitutions", {})
        for name in sorted(placeholders - set(substitutions)):
            findings.append(
                f"{logical_id}: ${{{name}}} in {asl_path.name} has no DefinitionSubstitution"
            )
        for name in sorted(set(substitutions) - placeholders):
            findings.append(
                f"{logical_id}: DefinitionSubstitution {name} is used nowhere in {asl_path.name}"
            )
        for name, value in substitutions.items():
            for target in _referenced_resources(value):
                if target not in declared and not target.startswith("AWS::"):
                    findings.append(
                        f"{logical_id}: substitution {name} names missing resource {target}"
                    )
    return findings


class _NoManagedPolicies:
    """Stands in for SAM's IAM-backed managed-policy loader: offline, no policy names resolved."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(template_path: Path, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The template after the SAM transform, offline: code URIs point to S3 as `sam package`
    leaves them, and each definition is inlined. ``parameters`` are the values CloudFormation
    hands the transform (the defaults for the others)."""
    template = copy.deepcopy(read_template(template_path))
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(props.get(uri), str):
                props[uri] = f"s3://artifacts/{logical_id}.zip"
        if "DefinitionUri" in props:
            props["Definition"] = json.loads(
                (template_path.parent / props.pop("DefinitionUri")).read_text()
            )
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        return transform(template, parameters or {}, _NoManagedPolicies())
    finally:
        if previous is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def _render(node: Any) -> list[str]:
    """IAM resource values as strings (``${X.Arn}`` for GetAtt); conditional ones flattened."""
    if isinstance(node, list):
        return [text for item in node for text in _render(item)]
    if isinstance(node, dict) and "Fn::If" in node:
        return _render(node["Fn::If"][1:])
    if isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
        return []
    return [_render_one(node)]


def _render_one(node: Any) -> str:
    if isinstance(node, str):
        return node
    if "Fn::GetAtt" in node:
        return "${{{}.{}}}".format(*node["Fn::GetAtt"])
    if "Ref" in node:
        return "${" + node["Ref"] + "}"
    if isinstance(node.get("Fn::Sub"), str):
        return str(node["Fn::Sub"])
    text = json.dumps(node)
    if "Fn::Split" in node and "DataBucketNames" in text:
        return "<DataBucketNames>/*" if "/*" in text else "<DataBucketNames>"
    return text


def _statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                yield from (s for s in statement["Fn::If"][1:] if "Effect" in s)
            else:
                yield statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def bucket_findings(resources: dict[str, Any]) -> list[str]:
    """Every bucket is private, encrypted, TLS-only, and versioned or expiring, and aborts
    incomplete uploads."""
    findings = []
    policies = [r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        props = resource.get("Properties", {})
        block = props.get("PublicAccessBlockConfiguration", {})
        for flag in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ):
            if block.get(flag) is not True:
                findings.append(f"{logical_id}: PublicAccessBlockConfiguration.{flag} is not true")
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
            findings.append(f"{logical_id}: no default encryption")
        tls_only = [
            s
            for p in policies
            if p["Properties"]["Bucket"] == {"Ref": logical_id}
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", False)
            and set(_render(s["Resource"]))
            >= {f"${{{logical_id}.Arn}}", f"${{{logical_id}.Arn}}/*"}
        ]
        if not tls_only:
            findings.append(f"{logical_id}: no bucket policy denying requests without TLS")
        lifecycle = props.get("LifecycleConfiguration", {}).get("Rules", [])
        versioned = props.get("VersioningConfiguration", {}).get("Status") == "Enabled"
        expiring = any(
            "ExpirationInDays" in r or "NoncurrentVersionExpiration" in r for r in lifecycle
        )
        if not (versioned or expiring):
            findings.append(f"{logical_id}: neither versioned nor expiring anything")
        if not any("AbortIncompleteMultipartUpload" in r for r in lifecycle):
            findings.append(f"{logical_id}: incomplete multipart uploads are never aborted")
    return findings


def iam_findings(
    resources: dict[str, Any], expected_s3: dict[str, dict[str, set[str]]]
) -> list[str]:
    """No wildcard actions, no deletes but those expected (a repeated prediction replacing
    its own parts), no resource "*" except where AWS requires it; each function role's S3
    access exactly as expected; managed policies only the logging ones."""
    findings = []
    for logical_id, role in resources.items():
        if role["Type"] != "AWS::IAM::Role":
            continue
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            if _render(arn)[0] not in ALLOWED_MANAGED_POLICIES:
                findings.append(f"{logical_id}: managed policy {arn} is not allowed")
        granted: dict[str, set[str]] = {}
        for statement in _statements(role):
            if statement["Effect"] != "Allow":
                continue
            actions = _as_list(statement["Action"])
            targets = _render(statement["Resource"])
            for action in actions:
                if "*" in action:
                    findings.append(f"{logical_id}: wildcard action {action}")
                deletes_expected = action in expected_s3.get(logical_id, {})
                if action.startswith("s3:Delete") and not deletes_expected:
                    findings.append(f"{logical_id}: may delete objects ({action})")
                if "*" in targets and not RESOURCE_STAR_ACTIONS.match(action):
                    findings.append(f"{logical_id}: {action} on every resource")
                if action.startswith("s3:"):
                    granted.setdefault(action, set()).update(targets)
        if logical_id in expected_s3 and granted != expected_s3[logical_id]:
            findings.append(f"{logical_id}: S3 access {granted} is not {expected_s3[logical_id]}")
    return findings


def state_machine_findings(resources: dict[str, Any]) -> list[str]:
    """Each state machine's role invokes only its own functions, reads only grove plans, starts
    only its own children; logging is on without execution data."""
    findings = []
    for logical_id, machine in resources.items():
        if machine["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        props = machine["Properties"]
        logging = props.get("LoggingConfiguration", {})
        if (
            logging.get("Level") not in ("ERROR", "ALL")
            or logging.get("IncludeExecutionData") is not False
        ):
            findings.append(f"{logical_id}: logging is off or includes execution data")
        functions = {
            target
            for value in props.get("DefinitionSubstitutions", {}).values()
            for target in _referenced_resources(value)
            if resources.get(target, {}).get("Type") == "AWS::Lambda::Function"
        }
        allowed = {f"${{{f}.Arn}}" for f in functions} | {f"${{{f}.Arn}}:*" for f in functions}
        role = resources[props["RoleArn"]["Fn::GetAtt"][0]]
        for statement in _statements(role):
            for action in _as_list(statement["Action"]):
                targets = set(_render(statement["Resource"]))
                if action == "lambda:InvokeFunction" and targets != allowed:
                    findings.append(
                        f"{logical_id}: invokes {sorted(targets)}, not its functions {sorted(allowed)}"
                    )
                reads_plans = action == "s3:GetObject" and targets <= ITEM_PLANS
                writes_results = action in RESULT_WRITER_ACTIONS and targets <= MAP_RESULTS
                if action.startswith("s3:") and not (reads_plans or writes_results):
                    findings.append(
                        f"{logical_id}: {action} on {sorted(targets)} beyond reading item plans "
                        "and writing Map results"
                    )
                # A Distributed Map starts children of its own state machine, named in the template.
                own_name = props.get("StateMachineName", {}).get("Fn::Sub", "<unnamed>")
                if action.startswith("states:") and not all(own_name in t for t in targets):
                    findings.append(
                        f"{logical_id}: {action} on another state machine {sorted(targets)}"
                    )
    return findings


def log_group_findings(resources: dict[str, Any]) -> list[str]:
    """Every log group expires its logs, and every function logs to a group the stack manages."""
    findings = []
    for logical_id, group in resources.items():
        if group["Type"] == "AWS::Logs::LogGroup" and "RetentionInDays" not in group.get(
            "Properties", {}
        ):
            findings.append(f"{logical_id}: log group keeps logs forever")
    for logical_id, function in resources.items():
        if function["Type"] == "AWS::Lambda::Function":
            group = function["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
            if resources.get(group, {}).get("Type") != "AWS::Logs::LogGroup":
                findings.append(f"{logical_id}: logs to a group the stack does not manage")
    return findings


# ----------------------------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return transformed(TEMPLATE)


def test_template_passes_cfn_lint() -> None:
    # GIVEN the SAM template  WHEN cfn-lint runs (it applies the SAM transform itself)
    # THEN it has no findings at all: no error, warning or informational match
    assert cfn_lint_findings(TEMPLATE.read_text()) == []


def test_transformed_template_passes_cfn_lint(stack: dict[str, Any]) -> None:
    assert cfn_lint_findings(json.dumps(stack, indent=1)) == []


@pytest.mark.skipif(not SAM.exists(), reason="no .venv-sam: `make sam-venv` installs aws-sam-cli")
def test_sam_validate_lint_offline(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "offline",
        "AWS_SECRET_ACCESS_KEY": "offline",
        "SAM_CLI_TELEMETRY": "0",
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("asl", ASL_FILES, ids=lambda p: p.name)
def test_asl_definition_lints_clean(asl: Path) -> None:
    assert asl_findings(asl.read_text()) == []


@pytest.mark.parametrize("asl", ASL_FILES, ids=lambda p: p.name)
def test_asl_validator_finds_the_definition_valid(asl: Path, tmp_path: Path) -> None:
    assert asl_validator_findings(asl.read_text(), tmp_path) == []


def test_asl_validator_reports_an_invalid_definition(tmp_path: Path) -> None:
    findings = asl_validator_findings((BAD / "misspelled-field.asl.json").read_text(), tmp_path)
    assert findings and "is invalid" in findings[0], findings


def test_memory_and_concurrency_parameters_reach_their_functions(stack: dict[str, Any]) -> None:
    # GIVEN the template's memory parameters, each defaulting to at most the 3,008 MB every
    # account has; the builders to 1,769 MB, the smallest memory Lambda gives a whole vCPU
    # (a builder fits on one thread: more memory buys it no speed)
    template = read_template(TEMPLATE)
    memory = {
        "PlanFunction": ("PlanMemorySize", 3008),
        "BuildGroveFunction": ("BuilderMemorySize", 1769),
        "MergeFunction": ("MergeMemorySize", 3008),
        "IngestFunction": ("IngestMemorySize", 3008),
    }
    for function, (parameter, default) in memory.items():
        declared = template["Parameters"][parameter]
        assert (declared["Default"], declared["MaxValue"]) == (default, 10240), parameter
        # THEN each sizes its function
        props = stack["Resources"][function]["Properties"]
        assert props["MemorySize"] == {"Ref": parameter}, function
    # AND Plan knows the builders' memory and reserved concurrency (it clamps max_concurrency)
    plan_env = stack["Resources"]["PlanFunction"]["Properties"]["Environment"]["Variables"]
    assert plan_env["GROVEFLOW_BUILDER_MEMORY_MB"] == {"Ref": "BuilderMemorySize"}
    assert plan_env["GROVEFLOW_BUILDER_RESERVED_CONCURRENCY"] == {
        "Ref": "BuilderReservedConcurrency"
    }


def test_every_placeholder_has_a_substitution_and_every_substitution_a_resource() -> None:
    assert substitution_findings(TEMPLATE) == []


def test_every_handler_imports() -> None:
    # GIVEN each function the template declares
    template = read_template(TEMPLATE)
    functions = {
        lid: r["Properties"]
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {
        "PlanFunction",
        "BuildGroveFunction",
        "MergeFunction",
        "PlanPredictionsFunction",
        "ScoreShardFunction",
        "FinishPredictionsFunction",
        "IngestFunction",
        "ValidateRequestFunction",
        "SearchPlanFunction",
        "ScoreRoundFunction",
    }
    for logical_id, props in functions.items():
        module_name, _, attribute = props["Handler"].rpartition(".")
        path = ROOT / props["CodeUri"] / f"{module_name}.py"
        # WHEN its handler module is imported from its CodeUri
        spec = importlib.util.spec_from_file_location(f"handler_{logical_id}", path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # THEN the named handler is there and callable
        assert callable(getattr(module, attribute, None)), f"{logical_id}: {props['Handler']}"


def test_buckets_are_private_encrypted_tls_only_and_expiring(stack: dict[str, Any]) -> None:
    assert bucket_findings(stack["Resources"]) == []


def test_roles_reach_only_their_prefixes(stack: dict[str, Any]) -> None:
    assert iam_findings(stack["Resources"], EXPECTED_S3) == []


def test_state_machine_role_is_limited_to_its_functions(stack: dict[str, Any]) -> None:
    assert state_machine_findings(stack["Resources"]) == []


def test_logs_expire_and_every_function_has_its_group(stack: dict[str, Any]) -> None:
    assert log_group_findings(stack["Resources"]) == []


def test_data_bucket_access_is_conditional(stack: dict[str, Any]) -> None:
    # GIVEN DataBucketNames empty (the default), no statement may name the data buckets
    statements = stack["Resources"]["PlanFunctionRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]
    conditional = [s for s in statements["Statement"] if "Fn::If" in s]
    assert [s["Fn::If"][0] for s in conditional] == [
        "HasDataBuckets",
        "HasDataBuckets",
        "HasDataKmsKey",
    ]
    decrypt = conditional[2]["Fn::If"][1]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", {"Ref": "DataKmsKeyArn"})
    assert stack["Conditions"]["HasDataBuckets"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DataBucketNames"}, ""]}]
    }
    plan_env = stack["Resources"]["PlanFunction"]["Properties"]["Environment"]["Variables"]
    assert plan_env["GROVEFLOW_DATA_BUCKETS"] == {"Ref": "DataBucketNames"}


# ------------------------------------------------------- architecture, tracing, listing (issue 28)


def _default_of(template: dict[str, Any], node: Any) -> Any:
    """A ``!Ref`` to a parameter as its default; anything else as it is."""
    if isinstance(node, dict) and node.get("Ref") in template.get("Parameters", {}):
        return template["Parameters"][node["Ref"]].get("Default")
    return node


def architecture_findings(template: dict[str, Any]) -> list[str]:
    """Every function and both layers follow the ``Architecture`` parameter (x86_64 one setting
    away), whose default is arm64; each layer is built for what it declares it runs on."""
    parameter = template["Parameters"].get("Architecture", {})
    findings = []
    if parameter.get("Default") != "arm64" or sorted(parameter.get("AllowedValues", [])) != [
        "arm64",
        "x86_64",
    ]:
        findings.append(f"Architecture: {parameter} is not arm64 by default, x86_64 allowed")
    follows = [{"Ref": "Architecture"}]
    defaults = template.get("Globals", {}).get("Function", {})
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            # Lambda's default when a function names none is x86_64
            declared = props.get("Architectures", defaults.get("Architectures", ["x86_64"]))
            if declared != follows:
                findings.append(f"{logical_id}: Architectures {declared} is not the parameter")
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            built = resource.get("Metadata", {}).get("BuildArchitecture", "x86_64")
            compatible = props.get("CompatibleArchitectures")
            if compatible != follows or built != follows[0]:
                findings.append(
                    f"{logical_id}: CompatibleArchitectures {compatible} and BuildArchitecture "
                    f"{built} are not the parameter"
                )
    return findings


def test_every_function_and_layer_is_arm64_by_default_and_x86_64_one_setting_away() -> None:
    template = read_template(TEMPLATE)
    assert architecture_findings(template) == []
    # AND with the defaults, the transformed stack's functions are arm64
    for logical_id, resource in transformed(TEMPLATE)["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            (architecture,) = resource["Properties"]["Architectures"]
            assert _default_of(template, architecture) == "arm64", logical_id


def test_the_architecture_contract_fails_on_a_function_of_its_own(tmp_path: Path) -> None:
    text = TEMPLATE.read_text().replace(
        "      CodeUri: functions/merge/\n",
        "      CodeUri: functions/merge/\n      Architectures: [x86_64]\n",
    )
    (tmp_path / "template.yaml").write_text(text)
    findings = architecture_findings(read_template(tmp_path / "template.yaml"))
    assert findings == ["MergeFunction: Architectures ['x86_64'] is not the parameter"]


def _evaluate(stack: dict[str, Any], node: Any, parameters: dict[str, str]) -> Any:
    """A condition's value (Fn::Equals, Fn::Not, Condition, Ref to a parameter) as
    CloudFormation evaluates it with ``parameters`` (defaults for the others)."""
    if isinstance(node, dict) and "Ref" in node:
        name = node["Ref"]
        return str(parameters.get(name, stack["Parameters"][name].get("Default")))
    if isinstance(node, dict) and "Fn::Equals" in node:
        left, right = (_evaluate(stack, side, parameters) for side in node["Fn::Equals"])
        return str(left) == str(right)
    if isinstance(node, dict) and "Fn::Not" in node:
        return not _evaluate(stack, node["Fn::Not"][0], parameters)
    if isinstance(node, dict) and "Condition" in node:
        return _evaluate(stack, stack["Conditions"][node["Condition"]], parameters)
    return node


def _deployed_statements(
    stack: dict[str, Any], role: dict[str, Any], parameters: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """A role's statements as deployed with ``parameters``: each Fn::If's chosen branch."""
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                condition, then, otherwise = statement["Fn::If"]
                chosen = (
                    then if _evaluate(stack, {"Condition": condition}, parameters) else otherwise
                )
                if "Effect" in chosen:
                    yield chosen
            else:
                yield statement


def xray_grants(stack: dict[str, Any], parameters: dict[str, str] | None = None) -> list[str]:
    """Every role of a transformed stack that may write X-Ray traces (a managed policy or an
    ``xray:`` action) once deployed with ``parameters``, by logical id."""
    granted = []
    for logical_id, role in stack["Resources"].items():
        if role["Type"] != "AWS::IAM::Role":
            continue
        managed = [_render(arn)[0] for arn in role["Properties"].get("ManagedPolicyArns", [])]
        actions = [
            action
            for statement in _deployed_statements(stack, role, parameters or {})
            for action in _as_list(statement.get("Action", []))
        ]
        if any("Xray" in arn for arn in managed) or any(a.startswith("xray:") for a in actions):
            granted.append(logical_id)
    return granted


def test_tracing_disabled_gives_no_role_an_xray_permission() -> None:
    # GIVEN the template as the SAM translator transforms it with Tracing Disabled (the default)
    disabled = transformed(TEMPLATE)
    # THEN no role may write traces, and no function traces
    assert xray_grants(disabled) == []
    functions = [r for r in disabled["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions and all("TracingConfig" not in f["Properties"] for f in functions)
    # AND with Tracing Active every function's role may, and each function traces
    active = transformed(TEMPLATE, {"Tracing": "Active"})
    roles = sorted(
        f"{lid}Role"
        for lid, r in active["Resources"].items()
        if r["Type"] in ("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine")
    )
    assert len(roles) == 13
    assert sorted(xray_grants(active, {"Tracing": "Active"})) == roles
    assert all(
        r["Properties"]["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}
        for r in active["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    )


def test_a_conditional_tracing_would_keep_the_xray_policy(tmp_path: Path) -> None:
    # GIVEN the form SAM cannot resolve: Tracing: !If [...] (what the template had)
    text = TEMPLATE.read_text().replace(
        "    Tracing: !Ref Tracing\n", "    Tracing: !If [TracingOn, Active, PassThrough]\n"
    )
    assert text != TEMPLATE.read_text()
    (tmp_path / "template.yaml").write_text(text)
    (tmp_path / "statemachine").symlink_to(ROOT / "statemachine")
    # THEN even disabled, every function's role gets the X-Ray policy: the check sees it
    assert "PlanFunctionRole" in xray_grants(transformed(tmp_path / "template.yaml"))


def list_bucket_findings(resources: dict[str, Any]) -> list[str]:
    """Every ``s3:ListBucket`` grant carries an ``s3:prefix`` condition: on the stack's bucket,
    exactly the top-level prefixes the role reads (``<prefix>/*``); on the data buckets, a
    dataset's key or folder (a non-empty prefix, never the whole bucket's listing)."""
    findings = []
    for logical_id, role in resources.items():
        if role["Type"] != "AWS::IAM::Role" or logical_id not in EXPECTED_S3:
            continue
        reads = {
            target.removeprefix(f"{BUCKET}/").split("/", 1)[0] + "/*"
            for target in EXPECTED_S3[logical_id].get("s3:GetObject", set())
            if target.startswith(f"{BUCKET}/")
        }
        for statement in _statements(role):
            if "s3:ListBucket" not in _as_list(statement["Action"]):
                continue
            # IfExists: a GET of a missing key carries no s3:prefix, and must read as a 404
            condition = statement.get("Condition", {})
            prefixes = condition.get("StringLikeIfExists", {}).get("s3:prefix")
            if prefixes is None:
                findings.append(f"{logical_id}: s3:ListBucket without an s3:prefix condition")
                continue
            on_data_buckets = _render(statement["Resource"]) == ["<DataBucketNames>"]
            expected = {"?*"} if on_data_buckets else reads
            if set(_as_list(prefixes)) != expected:
                findings.append(
                    f"{logical_id}: lists {sorted(_as_list(prefixes))}, not {sorted(expected)}"
                )
    return findings


def test_every_list_bucket_grant_is_held_to_the_prefixes_its_role_reads(
    stack: dict[str, Any],
) -> None:
    assert list_bucket_findings(stack["Resources"]) == []


def test_the_list_bucket_contract_fails_on_a_whole_bucket_listing(stack: dict[str, Any]) -> None:
    broken = copy.deepcopy(stack["Resources"])
    for statement in _statements(broken["MergeFunctionRole"]):
        statement.pop("Condition", None)
    assert list_bucket_findings(broken) == [
        "MergeFunctionRole: s3:ListBucket without an s3:prefix condition"
    ]


# ------------------------------------------------------------------------------- known-bad copies


def test_dangling_next_is_reported() -> None:
    findings = asl_findings((BAD / "dangling-next.asl.json").read_text())
    assert any('No state found named "BuildGrovez"' in f for f in findings), findings
    assert any("No transition found to state" in f and "Orphan" in f for f in findings), findings


def test_output_path_on_succeed_is_accepted_and_on_fail_reported() -> None:
    definition = {
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Done"}],
                "Default": "Failed",
            },
            "Done": {"Type": "Succeed", "OutputPath": "$.model"},
            "Failed": {"Type": "Fail", "OutputPath": "$.error"},
        },
    }
    findings = asl_findings(json.dumps(definition))
    assert findings == ['statelint: State Machine.States.Failed has forbidden field "OutputPath"']


def test_invalid_state_field_is_reported() -> None:
    findings = asl_findings((BAD / "misspelled-field.asl.json").read_text())
    assert any(f.startswith("cfn-lint: E3601") for f in findings), findings


def test_missing_substitution_is_reported() -> None:
    findings = substitution_findings(BAD / "missing-substitution.yaml")
    assert (
        "TrainStateMachine: ${MergeFunctionArn} in train.asl.json has no DefinitionSubstitution"
        in findings
    )
    assert any("DefinitionSubstitution StaleFunctionArn is used nowhere" in f for f in findings), (
        findings
    )
    assert any("names missing resource StaleFunction" in f for f in findings), findings


def test_public_bucket_is_reported() -> None:
    findings = bucket_findings(transformed(BAD / "public-bucket.yaml")["Resources"])
    assert "OpenBucket: PublicAccessBlockConfiguration.BlockPublicPolicy is not true" in findings
    assert "OpenBucket: no default encryption" in findings
    assert "OpenBucket: no bucket policy denying requests without TLS" in findings
    assert "OpenBucket: incomplete multipart uploads are never aborted" in findings


def test_broad_policies_are_reported() -> None:
    resources = transformed(BAD / "broad-policies.yaml")["Resources"]
    # (as the Merge role's were before it could delete a grown model's replaced files)
    expected = {k: v for k, v in EXPECTED_S3["MergeFunctionRole"].items() if k != "s3:DeleteObject"}
    iam = iam_findings(resources, {"MergeFunctionRole": expected})
    assert any("wildcard action s3:*" in f for f in iam), iam
    assert any("may delete objects (s3:DeleteObject)" in f for f in iam), iam
    assert any(f.startswith("MergeFunctionRole: S3 access") for f in iam), iam
    machine = state_machine_findings(resources)
    assert any("invokes" in f and "not its functions" in f for f in machine), machine
    assert any("logging is off" in f for f in machine), machine
    logs = log_group_findings(resources)
    assert "MergeFunction: logs to a group the stack does not manage" in logs

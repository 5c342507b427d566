"""The one resolver of CloudFormation intrinsics, read by the local engine and by the IAM check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from groveflow.local.iam import function_policies
from groveflow.local.intrinsics import ACCOUNT, REGION, IntrinsicResolver
from groveflow.local.template import load_template

TEMPLATE: dict[str, Any] = {
    "Parameters": {"Memory": {"Type": "Number", "Default": 512}},
    "Conditions": {"Big": {"Fn::Equals": [{"Ref": "Memory"}, "1024"]}},
    "Resources": {
        "Data": {"Type": "AWS::S3::Bucket"},
        "PlanFunction": {"Type": "AWS::Serverless::Function"},
    },
}


def _resolver(**parameters: Any) -> IntrinsicResolver:
    return IntrinsicResolver(TEMPLATE, "the-bucket", "stack", parameters)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"Ref": "AWS::StackName"}, "stack"),
        ({"Ref": "AWS::Region"}, REGION),
        ({"Ref": "AWS::AccountId"}, ACCOUNT),
        ({"Ref": "AWS::Partition"}, "aws"),
        ({"Ref": "AWS::URLSuffix"}, "amazonaws.com"),
        ({"Ref": "Memory"}, "512"),
        ({"Ref": "Data"}, "the-bucket"),
        ({"Ref": "PlanFunction"}, "stack-PlanFunction"),
        ({"Fn::GetAtt": ["Data", "Arn"]}, "arn:aws:s3:::the-bucket"),
        (
            {"Fn::GetAtt": "PlanFunction.Arn"},
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-PlanFunction",
        ),
        (
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Data}/runs/*"},
            "arn:aws:s3:::the-bucket/runs/*",
        ),
        ({"Fn::Sub": ["${Prefix}/x", {"Prefix": {"Ref": "Memory"}}]}, "512/x"),
        ({"Fn::Join": ["-", ["a", {"Ref": "Memory"}]]}, "a-512"),
        ({"Fn::Split": [",", "a,b"]}, ["a", "b"]),
        ({"Fn::If": ["Big", "large", "small"]}, "small"),
        (["kept", {"Ref": "AWS::NoValue"}], ["kept"]),
    ],
)
def test_each_intrinsic_resolves_to_the_local_value(node: Any, expected: Any) -> None:
    # GIVEN one resolver of a template WHEN a node is resolved THEN it is the local value
    assert _resolver().value(node) == expected


def test_an_override_replaces_a_parameters_default_in_conditions_too() -> None:
    # GIVEN Memory overridden WHEN a condition on it is resolved THEN the override counts
    assert _resolver(Memory=1024).value({"Fn::If": ["Big", "large", "small"]}) == "large"


@pytest.mark.parametrize(
    ("node", "words"),
    [
        ({"Fn::FindInMap": ["M", "k", "v"]}, "cannot resolve Fn::FindInMap"),
        ({"Ref": "Nothing"}, "cannot resolve !Ref Nothing"),
        ({"Fn::GetAtt": ["Data", "DomainName"]}, "cannot resolve !GetAtt Data.DomainName"),
    ],
)
def test_what_the_local_engine_cannot_resolve_is_refused_by_name(node: Any, words: str) -> None:
    # GIVEN an intrinsic the local engine has no value for WHEN it is resolved
    # THEN it is refused, naming it
    with pytest.raises(ValueError, match=words.replace("!", r"\!")):
        _resolver().value(node)


def test_a_property_that_is_not_a_scalar_is_refused_as_text() -> None:
    # GIVEN a list where a scalar property is expected WHEN it is read as text THEN refused
    with pytest.raises(ValueError, match="cannot resolve"):
        _resolver().text(["a", "b"])


def test_the_engine_and_the_iam_check_resolve_the_project_template_alike() -> None:
    # GIVEN the project's template, read by the engine and by the IAM check
    root = Path(__file__).resolve().parents[1]
    stack = load_template(root, bucket="the-bucket", stack_name="stack")
    policies = function_policies(root, bucket="the-bucket", stack_name="stack")
    # WHEN each names the functions THEN both know the same functions
    assert set(policies) == set(stack.functions)
    # AND every bucket a function's policies grant is the one its environment names
    granting = []
    for logical_id, spec in stack.functions.items():
        granted = {r for statement in policies[logical_id] for r in statement.resources}
        buckets = {r.split(":::")[1].split("/")[0] for r in granted if r.startswith("arn:aws:s3")}
        assert buckets <= {spec.environment["GROVEFLOW_BUCKET"]}, logical_id
        granting += [logical_id] if buckets else []
    assert "BuildGroveFunction" in granting

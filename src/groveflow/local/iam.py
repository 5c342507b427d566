"""The functions' IAM policies as CloudFormation would resolve them, and the calls they allow.

Each ``AWS::Serverless::Function``'s ``Policies`` (inline documents and SAM policy
templates, expanded from the SAM translator's own ``policy_templates.json``) are resolved
with the template's parameters (defaults unless given), conditions, pseudo parameters and
intrinsic functions by :mod:`groveflow.local.intrinsics`, the one resolver the local engine
reads the template with. A recorded call (see :mod:`groveflow.local.access_log`) is
mapped to the IAM action and resource AWS would authorize it against, and evaluated as IAM
does for one identity policy set: allowed by some Allow, denied by none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groveflow.local.intrinsics import IntrinsicResolver
from groveflow.local.template import read_template

__all__ = [
    "ACCOUNT_ACTIONS",
    "Statement",
    "allowed",
    "function_policies",
    "iam_request",
    "matches",
]

# S3 operations -> the IAM action AWS authorizes them as (the service authorization reference).
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetObjectVersion": "s3:GetObjectVersion",
}
_BUCKET_ACTIONS = {"s3:ListBucket", "s3:ListBucketVersions"}
# Actions the service authorization reference lists with no resource type: a policy can only
# grant them on "*" (Lambda's GetAccountSettings: the plan's read of the account's concurrency).
ACCOUNT_ACTIONS = {("lambda", "GetAccountSettings"): "lambda:GetAccountSettings"}


@dataclass(frozen=True)
class Statement:
    """One resolved policy statement."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str = ""


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: ``*`` any run of characters (``/`` too), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def allowed(statements: list[Statement], action: str, resource: str) -> bool:
    """Whether ``statements`` allow ``action`` on ``resource`` and none denies it."""

    def applies(statement: Statement) -> bool:
        return any(matches(a, action, ignore_case=True) for a in statement.actions) and any(
            matches(r, resource) for r in statement.resources
        )

    relevant = [s for s in statements if applies(s)]
    return any(s.effect == "Allow" for s in relevant) and not any(
        s.effect == "Deny" for s in relevant
    )


def iam_request(record: dict[str, Any]) -> tuple[str, str]:
    """The (action, resource ARN) a recorded call is authorized as.

    Raises
    ------
    ValueError
        For a call this module cannot map (a new kind of call must be mapped, not ignored).
    """
    service, operation = record.get("service"), record.get("operation")
    if service == "s3" and operation in S3_ACTIONS:
        action = S3_ACTIONS[operation]
        bucket = record["bucket"]
        if action in _BUCKET_ACTIONS:
            return action, f"arn:aws:s3:::{bucket}"
        return action, f"arn:aws:s3:::{bucket}/{record['key']}"
    account_action = ACCOUNT_ACTIONS.get((str(service), str(operation)))
    if account_action is not None:
        return account_action, "*"
    raise ValueError(
        f"no IAM mapping for {service}:{operation} (recorded by {record.get('function')}); "
        "add it to groveflow.local.iam"
    )


def function_policies(
    root: Path,
    *,
    bucket: str,
    stack_name: str,
    parameters: dict[str, str] | None = None,
) -> dict[str, list[Statement]]:
    """Every function's resolved policy statements, by logical id."""
    template = read_template(root / "template.yaml")
    resolver = IntrinsicResolver(template, bucket, stack_name, parameters)
    policies: dict[str, list[Statement]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        statements: list[Statement] = []
        for item in resource.get("Properties", {}).get("Policies", []) or []:
            statements.extend(_statements(resolver, item, logical_id))
        policies[logical_id] = statements
    return policies


def _statements(resolver: IntrinsicResolver, item: Any, owner: str) -> list[Statement]:
    if isinstance(item, str):
        raise ValueError(f"{owner}: managed policy {item!r} cannot be resolved offline")
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in _policy_templates():
        name, values = next(iter(item.items()))
        definition = _policy_templates()[name]["Definition"]
        document = resolver.with_refs(values or {}).value(definition)
    else:
        document = resolver.value(item)
    raw = document.get("Statement", [])
    resolved = []
    for statement in raw if isinstance(raw, list) else [raw]:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        resolved.append(
            Statement(
                effect=statement.get("Effect", "Allow"),
                actions=tuple([actions] if isinstance(actions, str) else actions),
                resources=tuple([resources] if isinstance(resources, str) else resources),
                sid=statement.get("Sid", ""),
            )
        )
    return resolved


_TEMPLATES: dict[str, Any] = {}


def _policy_templates() -> dict[str, Any]:
    """The SAM translator's policy templates (``S3ReadPolicy``...), as SAM expands them."""
    if not _TEMPLATES:
        import samtranslator

        path = Path(samtranslator.__file__).parent / "policy_templates_data/policy_templates.json"
        _TEMPLATES.update(json.loads(path.read_text())["Templates"])
    return _TEMPLATES

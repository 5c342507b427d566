"""The functions' IAM policies as CloudFormation would resolve them, and the calls they allow.

Each ``AWS::Serverless::Function``'s ``Policies`` (inline documents and SAM policy
templates, expanded from the SAM translator's own ``policy_templates.json``) are resolved
with the template's parameters (defaults unless given), conditions, pseudo parameters and
intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``, ``Fn::Split``,
``Fn::Join``, ``AWS::NoValue``). A recorded call (see :mod:`groveflow.local.access_log`) is
mapped to the IAM action and resource AWS would authorize it against, and evaluated as IAM
does for one identity policy set: allowed by some Allow, denied by none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groveflow.local.template import ACCOUNT, REGION, local_arn, read_template

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
_NO_VALUE = object()


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
    resolver = _Resolver(template, bucket, stack_name, parameters or {})
    policies: dict[str, list[Statement]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        statements: list[Statement] = []
        for item in resource.get("Properties", {}).get("Policies", []) or []:
            statements.extend(_statements(resolver, item, logical_id))
        policies[logical_id] = statements
    return policies


def _statements(resolver: _Resolver, item: Any, owner: str) -> list[Statement]:
    if isinstance(item, str):
        raise ValueError(f"{owner}: managed policy {item!r} cannot be resolved offline")
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in _policy_templates():
        name, values = next(iter(item.items()))
        definition = _policy_templates()[name]["Definition"]
        document = _Resolver.with_refs(resolver, values or {}).value(definition)
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


class _Resolver:
    """CloudFormation's intrinsic functions over one template, with local values."""

    def __init__(
        self, template: dict[str, Any], bucket: str, stack_name: str, parameters: dict[str, str]
    ) -> None:
        self.template = template
        self.resources: dict[str, Any] = template.get("Resources", {})
        self.bucket = bucket
        self.stack_name = stack_name
        self.refs: dict[str, Any] = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.refs.update(
            {
                "AWS::StackName": stack_name,
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            }
        )

    @classmethod
    def with_refs(cls, base: _Resolver, refs: dict[str, Any]) -> _Resolver:
        copy = cls.__new__(cls)
        copy.__dict__.update(base.__dict__)
        copy.refs = {**base.refs, **{k: base.value(v) for k, v in refs.items()}}
        return copy

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((name, argument),) = node.items()
            function = getattr(self, "_" + name.replace("::", "_").replace("Fn_", "fn_"), None)
            if name in ("Ref", "Condition") or name.startswith("Fn::"):
                if function is None:
                    raise ValueError(f"cannot resolve {name}")
                return function(argument)
        resolved = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _Ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.refs:
            return self.refs[name]
        kind = self.resources.get(name, {}).get("Type", "")
        if kind == "AWS::S3::Bucket":
            return self.bucket
        if kind == "AWS::Serverless::Function":
            return f"{self.stack_name}-{name}"
        raise ValueError(f"cannot resolve Ref {name}")

    def _fn_GetAtt(self, argument: Any) -> str:
        target, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return local_arn(self.resources, target, attribute, self.bucket, self.stack_name)

    def _fn_Sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {k: self.value(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self._fn_GetAtt(name.split(".", 1)))
            return str(self._Ref(name))

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)

    def _fn_Join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(v) for v in self.value(items))

    def _fn_Split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return str(self.value(text)).split(delimiter)

    def _fn_If(self, argument: list[Any]) -> Any:
        condition, then, otherwise = argument
        return self.value(then if self._Condition(condition) else otherwise)

    def _Condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def _fn_Equals(self, argument: list[Any]) -> bool:
        left, right = (self.value(v) for v in argument)
        return str(left) == str(right)

    def _fn_Not(self, argument: list[Any]) -> bool:
        return not self.value(argument[0])

    def _fn_And(self, argument: list[Any]) -> bool:
        return all(self.value(v) for v in argument)

    def _fn_Or(self, argument: list[Any]) -> bool:
        return any(self.value(v) for v in argument)

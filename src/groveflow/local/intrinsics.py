"""CloudFormation's intrinsic functions over one template, with the local engine's values.

One resolver for every reader of template.yaml: the local engine's functions and state
machines (:mod:`groveflow.local.template`) and the functions' IAM policies
(:mod:`groveflow.local.iam`). ``Ref`` (parameters, the pseudo parameters of
:data:`PSEUDO_PARAMETERS`, ``AWS::NoValue`` and resources), ``Condition``, ``Fn::GetAtt``,
``Fn::Sub``, ``Fn::Join``, ``Fn::Split``, ``Fn::If``, ``Fn::Equals``, ``Fn::Not``, ``Fn::And``
and ``Fn::Or``; anything else is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACCOUNT",
    "NO_VALUE",
    "REGION",
    "IntrinsicResolver",
    "local_arn",
    "pseudo_parameters",
]

ACCOUNT = "123456789012"
"""The account id the local engine gives its resources (moto's default account)."""
REGION = "us-east-1"
"""The region the local engine runs in."""

NO_VALUE: Any = object()
"""``!Ref AWS::NoValue``: the property or list item it stands for is removed."""


def pseudo_parameters(stack_name: str) -> dict[str, str]:
    """CloudFormation's pseudo parameters as the local engine answers them."""
    return {
        "AWS::StackName": stack_name,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def local_arn(
    resources: dict[str, Any], target: str, attribute: str, bucket: str, stack_name: str
) -> str:
    """``!GetAtt target.Arn`` as the local engine names it: the bucket's or a function's."""
    kind = resources.get(target, {}).get("Type", "")
    if kind == "AWS::Serverless::Function" and attribute == "Arn":
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack_name}-{target}"
    if kind == "AWS::S3::Bucket" and attribute == "Arn":
        return f"arn:aws:s3:::{bucket}"
    raise ValueError(f"the local engine cannot resolve !GetAtt {target}.{attribute}")


def _ref_by_type(kind: str, name: str, bucket: str, stack_name: str) -> str | None:
    """``!Ref`` of a resource of the template, by its type (None: not one the engine names)."""
    return {
        "AWS::S3::Bucket": bucket,
        "AWS::Serverless::Function": f"{stack_name}-{name}",
        "AWS::Serverless::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
    }.get(kind)


class IntrinsicResolver:
    """Resolves a template's intrinsic functions to local values.

    Parameters
    ----------
    template : dict
        The template as :func:`groveflow.local.template.read_template` reads it.
    bucket : str
        The bucket the template's ``AWS::S3::Bucket`` stands for.
    stack_name : str
    parameters : dict of str to str, default=None
        Values of the template's parameters (their ``Default`` where not given).
    """

    def __init__(
        self,
        template: dict[str, Any],
        bucket: str,
        stack_name: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        given = parameters or {}
        self.template = template
        self.resources: dict[str, Any] = template.get("Resources", {})
        self.bucket = bucket
        self.stack_name = stack_name
        self.refs: dict[str, Any] = {
            name: str(given.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.refs.update(pseudo_parameters(stack_name))
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Condition": self._condition,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda argument: not self.value(argument[0]),
            "Fn::And": lambda argument: all(self.value(v) for v in argument),
            "Fn::Or": lambda argument: any(self.value(v) for v in argument),
        }

    def with_refs(self, refs: dict[str, Any]) -> IntrinsicResolver:
        """A resolver that also answers ``refs`` (a SAM policy template's own parameters),
        each resolved by this one."""
        added = {name: self.value(node) for name, node in refs.items()}
        copy = IntrinsicResolver(self.template, self.bucket, self.stack_name)
        copy.refs = {**self.refs, **added}
        return copy

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic function in it resolved (``AWS::NoValue`` removed)."""
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        intrinsic = self._intrinsic(node)
        if intrinsic is not None:
            function, argument = intrinsic
            return function(argument)
        resolved = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _intrinsic(self, node: dict[str, Any]) -> tuple[Callable[[Any], Any], Any] | None:
        """The intrinsic function ``node`` calls and its argument; None for a plain mapping."""
        if len(node) != 1:
            return None
        ((name, argument),) = node.items()
        if name not in ("Ref", "Condition") and not name.startswith("Fn::"):
            return None
        if name not in self._functions:
            raise ValueError(f"the local engine cannot resolve {name}")
        return self._functions[name], argument

    def text(self, node: Any) -> str:
        """``node`` resolved to a scalar, as text (a property such as an environment
        variable's value or a function's timeout)."""
        resolved = self.value(node)
        if not isinstance(resolved, str | int | float):
            raise ValueError(f"the local engine cannot resolve {node!r} to a value")
        return str(resolved)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.refs:
            return self.refs[name]
        kind = self.resources.get(name, {}).get("Type", "")
        value = _ref_by_type(kind, name, self.bucket, self.stack_name)
        if value is None:
            raise ValueError(f"the local engine cannot resolve !Ref {name}")
        return value

    def _get_att(self, argument: Any) -> str:
        target, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return local_arn(self.resources, target, attribute, self.bucket, self.stack_name)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {k: self.value(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self._get_att(name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)

    def _join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(v) for v in self.value(items))

    def _split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return str(self.value(text)).split(delimiter)

    def _if(self, argument: list[Any]) -> Any:
        condition, then, otherwise = argument
        return self.value(then if self._condition(condition) else otherwise)

    def _condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def _equals(self, argument: list[Any]) -> bool:
        left, right = (self.value(v) for v in argument)
        return str(left) == str(right)

"""Reading template.yaml: which handler serves which function, with what settings.

template.yaml is the single source of truth. The local engine learns from it
every function's code, handler, environment, timeout and memory, and every
state machine's definition file and ``DefinitionSubstitutions``.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from groveflow.local.intrinsics import ACCOUNT, REGION, IntrinsicResolver

__all__ = [
    "BuildError",
    "FunctionSpec",
    "Stack",
    "StateMachineSpec",
    "function_name_of",
    "load_build",
    "load_template",
    "machine_architecture",
    "read_template",
]


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short tags (``!Ref``, ``!GetAtt``...)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def read_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template into plain dicts (short tags become ``Fn::`` forms)."""
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return loaded


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function as the template declares it.

    Parameters
    ----------
    logical_id : str
    function_name : str
        ``<stack name>-<logical id>``, as SAM names deployed functions.
    code_dir : Path
    handler : str
        ``module.function``, relative to ``code_dir``.
    environment : dict of str to str
    timeout_seconds : int
    memory_mb : int
    runtime : str, default="python3.12"
    layers : tuple of Path, default=()
        Each of its layers' content directory (``ContentUri``), in the template's order.
    """

    logical_id: str
    function_name: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    runtime: str = "python3.12"
    layers: tuple[Path, ...] = ()

    @property
    def sys_path(self) -> tuple[Path, ...]:
        """What Lambda's Python runtime puts before its standard library for this function
        as built: its code (``/var/task``), then its layers' ``python/lib/<runtime>/
        site-packages`` and ``python`` (under ``/opt``, where each layer is extracted in
        turn, a later one's file replacing an earlier's: later layers come first here).
        Not the runtime's own boto3 (``/var/runtime``): a function runs with the SDK it
        packages."""
        layers = self.layers[::-1]
        site_packages = [
            layer / "python" / "lib" / self.runtime / "site-packages" for layer in layers
        ]
        return (self.code_dir, *site_packages, *(layer / "python" for layer in layers))

    @property
    def arn(self) -> str:
        """The ARN the local engine gives this function."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"


@dataclass(frozen=True)
class StateMachineSpec:
    """One state machine: its ASL file and the values of its ``${...}`` placeholders."""

    logical_id: str
    definition_path: Path
    substitutions: dict[str, str]

    def definition(self) -> str:
        """The ASL text with every placeholder substituted."""
        text = self.definition_path.read_text()
        for name, value in self.substitutions.items():
            text = text.replace("${" + name + "}", value)
        return text


@dataclass
class Stack:
    """What the local engine needs to know of template.yaml."""

    root: Path
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    state_machines: dict[str, StateMachineSpec] = field(default_factory=dict)

    def function_for(self, name_or_arn: str) -> FunctionSpec:
        """The function a logical id, or an invoke's ``FunctionName`` (name or ARN), names."""
        name = function_name_of(name_or_arn)
        for spec in self.functions.values():
            if name in (spec.logical_id, spec.function_name):
                return spec
        raise KeyError(
            f"template.yaml declares no function {name!r}; it has {sorted(self.functions)}"
        )


def function_name_of(name_or_arn: str) -> str:
    """A Lambda ``FunctionName`` as given to Invoke (a name, or an ARN, maybe qualified) as
    the function's name: ``arn:aws:lambda:us-east-1:123:function:NAME[:alias]`` gives NAME."""
    parts = name_or_arn.split(":")
    return parts[6] if name_or_arn.startswith("arn:") and len(parts) > 6 else name_or_arn


def _check_overrides(parameters: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse a parameter override the template does not declare, or a value it does not
    accept (see :func:`_parameter_problem`), as ``sam deploy --parameter-overrides`` would.

    Raises
    ------
    ParameterError
        Naming the parameter and the value, and what is accepted.
    """
    given = {name: str(value) for name, value in overrides.items()}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise ParameterError(
            f"parameter overrides {unknown} are not parameters of the template; "
            f"its parameters are: {sorted(parameters)}"
        )
    for name, value in given.items():
        problem = _parameter_problem(parameters[name], value)
        if problem:
            raise ParameterError(f"parameter {name}={value!r} {problem}")


class BuildError(ValueError):
    """A ``sam build`` output the local engine cannot run as built (none there, built for
    another architecture, a layer it cannot find), named with what would fix it."""


class ParameterError(ValueError):
    """A parameter override the template does not accept (named, with what it accepts)."""


def _parameter_problem(parameter: dict[str, Any], value: str) -> str | None:
    """What is wrong with ``value`` for a template ``parameter`` (as CloudFormation checks
    it: Number, MinValue/MaxValue, AllowedValues, AllowedPattern), or None."""
    allowed = parameter.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        return f"is not one of {allowed}"
    pattern = parameter.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        return f"does not match its AllowedPattern {pattern!r}"
    if parameter.get("Type") == "Number":
        low, high = parameter.get("MinValue"), parameter.get("MaxValue")
        if not value.lstrip("-").isdigit():
            return f"is not a whole number (accepted: {low} to {high})"
        if (low is not None and int(value) < int(low)) or (
            high is not None and int(value) > int(high)
        ):
            return f"is out of range; accepted: {low} to {high}"
    return None


def machine_architecture() -> str:
    """This machine's architecture as Lambda names it: ``x86_64`` or ``arm64``."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def _layer_dirs(root: Path, resources: dict[str, Any], layers: list[Any]) -> tuple[Path, ...]:
    """The content directories of a function's layers, each a ``!Ref`` to a layer of the
    template (one given by ARN is not on this machine)."""
    dirs = []
    for layer in layers:
        target = str(layer.get("Ref")) if isinstance(layer, dict) else ""
        if resources.get(target, {}).get("Type") != "AWS::Serverless::LayerVersion":
            raise BuildError(
                f"layer {layer!r} is not a layer of the template: only a !Ref to an "
                "AWS::Serverless::LayerVersion in it can run as built on this machine"
            )
        dirs.append(root / resources[target]["Properties"]["ContentUri"])
    return tuple(dirs)


def load_template(
    root: Path,
    *,
    bucket: str,
    stack_name: str = "groveflow",
    parameters: dict[str, Any] | None = None,
) -> Stack:
    """Read ``root/template.yaml`` into a :class:`Stack` with local values for every reference;
    ``parameters`` override the template's parameter defaults, as ``sam deploy
    --parameter-overrides`` does (refused by name if the template has no such parameter)."""
    return _load(root, bucket, stack_name, parameters, built=False)


def load_build(
    build_dir: Path,
    *,
    bucket: str,
    stack_name: str = "groveflow",
    parameters: dict[str, Any] | None = None,
) -> Stack:
    """Read a ``sam build`` output (``.aws-sam/build``) into a :class:`Stack` whose functions
    run as built: their code and layers from ``build_dir`` (see
    :attr:`FunctionSpec.sys_path`), its state machines from the built template.

    Raises
    ------
    BuildError
        If ``build_dir`` holds no build, a function's code or layer is not built there, or
        a function is built for another architecture than this machine's.
    """
    if not (build_dir / "template.yaml").is_file():
        raise BuildError(
            f"no sam build in {build_dir} (no template.yaml): build it with `sam build` "
            "(in this repository, `make build`)"
        )
    stack = _load(build_dir, bucket, stack_name, parameters, built=True)
    for spec in stack.functions.values():
        for needed in (spec.code_dir, *(layer / "python" for layer in spec.layers)):
            if not needed.is_dir():
                raise BuildError(f"{spec.logical_id}: {needed} is not built; run `sam build` again")
    return stack


def _load(
    root: Path,
    bucket: str,
    stack_name: str,
    parameters: dict[str, Any] | None,
    *,
    built: bool,
) -> Stack:
    template = read_template(root / "template.yaml")
    _check_overrides(template.get("Parameters", {}), parameters or {})
    resolve = IntrinsicResolver(template, bucket, stack_name, parameters)
    defaults = template.get("Globals", {}).get("Function", {})
    resources = template.get("Resources", {})
    stack = Stack(root=root)
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            runtime = resolve.text(props.get("Runtime", defaults.get("Runtime", "python3.12")))
            layers: tuple[Path, ...] = ()
            if built:
                declared = props.get("Layers", defaults.get("Layers", []))
                layers = _layer_dirs(root, resources, declared)
                architectures = props.get("Architectures", defaults.get("Architectures", []))
                _check_architecture(
                    logical_id,
                    _layers_built_for(resources, declared)
                    or [resolve.text(item) for item in architectures or ["x86_64"]],
                )
            env_nodes = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **props.get("Environment", {}).get("Variables", {}),
            }
            stack.functions[logical_id] = FunctionSpec(
                logical_id=logical_id,
                function_name=f"{stack_name}-{logical_id}",
                code_dir=root / props["CodeUri"],
                handler=props["Handler"],
                environment={k: resolve.text(v) for k, v in env_nodes.items()},
                timeout_seconds=int(resolve.text(props.get("Timeout", defaults.get("Timeout", 3)))),
                memory_mb=int(
                    resolve.text(props.get("MemorySize", defaults.get("MemorySize", 128)))
                ),
                runtime=runtime,
                layers=layers,
            )
        elif resource.get("Type") == "AWS::Serverless::StateMachine":
            stack.state_machines[logical_id] = StateMachineSpec(
                logical_id=logical_id,
                definition_path=root / props["DefinitionUri"],
                substitutions={
                    k: resolve.text(v) for k, v in props.get("DefinitionSubstitutions", {}).items()
                },
            )
    return stack


def _layers_built_for(resources: dict[str, Any], layers: list[Any]) -> list[str]:
    """The architectures a function's layers were built for: each one's
    ``Metadata.BuildArchitecture``, where it says (what ``sam build`` built it for)."""
    metadata = [resources[layer["Ref"]].get("Metadata", {}) for layer in layers]
    return [str(m["BuildArchitecture"]) for m in metadata if "BuildArchitecture" in m]


def _check_architecture(logical_id: str, built_for: list[str]) -> None:
    """Refuse a function built for another architecture than this machine's (its layers'
    ``BuildArchitecture``, else its ``Architectures``): its layers' compiled libraries would
    not load here."""
    machine = machine_architecture()
    other = next((architecture for architecture in built_for if architecture != machine), None)
    if other is not None:
        raise BuildError(
            f"{logical_id} is built for {other} and this machine is {machine}: run it as "
            f"built on a {other} machine, or build it for {machine} (the template's "
            "Architectures and its layers' BuildArchitecture) to check it here"
        )

"""What the local engine refuses to run as built, by name, before any worker starts: no
build, a build for another architecture, a layer it cannot have, a runtime this machine
lacks, injected faults, a build directory given with a stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from groveflow.engines import EngineError, Local, engine_for
from groveflow.local import LocalEngine
from groveflow.local.faults import FaultInjector
from groveflow.local.template import BuildError, load_build, machine_architecture

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: {runtime}
    Architectures: [{architecture}]
Resources:
  DependenciesLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: DependenciesLayer
    Metadata: {metadata}
  ProbeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ProbeFunction
      Handler: app.handler
      Layers: [{layer}]
"""


def _build(
    directory: Path,
    *,
    runtime: str = "python3.12",
    architecture: str | None = None,
    layer: str = "!Ref DependenciesLayer",
    layer_built_for: str | None = None,
) -> Path:
    """A `sam build` output of one function and its layer, as .aws-sam/build lays it out."""
    (directory / "ProbeFunction").mkdir(parents=True)
    (directory / "ProbeFunction" / "app.py").write_text("def handler(event, context):\n    1\n")
    (directory / "DependenciesLayer" / "python").mkdir(parents=True)
    (directory / "template.yaml").write_text(
        TEMPLATE.format(
            runtime=runtime,
            architecture=architecture or machine_architecture(),
            layer=layer,
            metadata={"BuildArchitecture": layer_built_for} if layer_built_for else {},
        )
    )
    return directory


def test_a_build_reads_as_lambda_lays_it_out(tmp_path: Path) -> None:
    # GIVEN a build of one function with one layer WHEN it is read
    spec = load_build(_build(tmp_path), bucket="b").functions["ProbeFunction"]
    # THEN the function runs its built code, then its layer, as Lambda's /var/task and /opt
    layer = tmp_path / "DependenciesLayer" / "python"
    assert spec.runtime == "python3.12"
    assert spec.sys_path == (
        tmp_path / "ProbeFunction",
        layer / "lib" / "python3.12" / "site-packages",
        layer,
    )


def test_no_build_is_refused_with_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no sam build in .*: build it with `sam build`"):
        load_build(tmp_path, bucket="b")


@pytest.mark.parametrize("built", ["function", "layer"])
def test_a_build_for_another_architecture_is_refused_naming_both(
    tmp_path: Path, built: str
) -> None:
    # GIVEN a function, or the layer it runs with, built for the architecture this machine
    # is not (a layer's BuildArchitecture is what its libraries were built for)
    machine = machine_architecture()
    other = "arm64" if machine == "x86_64" else "x86_64"
    if built == "function":
        build = _build(tmp_path, architecture=other)
    else:
        build = _build(tmp_path, architecture=machine, layer_built_for=other)
    # WHEN it is read THEN it is refused, naming both and what to do
    with pytest.raises(BuildError) as refused:
        load_build(build, bucket="b")
    assert str(refused.value) == (
        f"ProbeFunction is built for {other} and this machine is {machine}: run it as built "
        f"on a {other} machine, or build it for {machine} (the template's Architectures and "
        "its layers' BuildArchitecture) to check it here"
    )


def test_a_layer_given_by_arn_or_not_built_is_refused(tmp_path: Path) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:other:1"
    with pytest.raises(BuildError, match="only a !Ref to an AWS::Serverless::LayerVersion"):
        load_build(_build(tmp_path / "arn", layer=arn), bucket="b")
    unbuilt = _build(tmp_path / "unbuilt")
    (unbuilt / "DependenciesLayer" / "python").rmdir()
    with pytest.raises(BuildError, match=r"ProbeFunction: .*DependenciesLayer/python is not built"):
        load_build(unbuilt, bucket="b")


def test_a_runtime_this_machine_lacks_is_refused_with_how_to_get_it(tmp_path: Path) -> None:
    build = _build(tmp_path, runtime="python3.99")
    with pytest.raises(BuildError) as refused:
        LocalEngine(build_dir=build, state_dir=tmp_path / "state", workers=1)
    assert str(refused.value) == (
        "the build's functions run on python3.99, which is not on this machine: install it "
        "(e.g. `pyenv install 3.99`), or name its interpreter in PYTHON399"
    )


def test_faults_are_refused_as_built(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="faults cannot be injected into functions run as built"):
        LocalEngine(
            build_dir=_build(tmp_path), state_dir=tmp_path / "state", faults=FaultInjector()
        )


def test_the_api_says_why_a_build_cannot_run_and_a_stack_takes_none(tmp_path: Path) -> None:
    # GIVEN the local engine asked for a build that is not there
    engine = Local(build_dir=tmp_path / "missing", state_dir=tmp_path / "state")
    # WHEN it starts THEN the engine error says what to do
    with pytest.raises(EngineError, match=r"no sam build in .*missing"):
        _ = engine.engine
    # and a stack refuses a build directory: it runs what was deployed
    with pytest.raises(EngineError, match="a build directory is the local engine's"):
        engine_for(stack="groveflow", build_dir=".aws-sam/build")

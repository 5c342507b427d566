"""The arm64 build (issue 28): `sam build` of the stack for arm64, with no Docker, in a directory
of its own (.aws-sam/build stays this machine's build, which the as-built tests run).

Every compiled extension in the built layers must be an aarch64 ELF object, and each function
with its layers must stay under Lambda's 250 MB unzipped limit with the margin
tests/test_deploy_build.py keeps. Slow (pip downloads the aarch64 wheels, about 60 MB, unless
pip's cache holds them; the build takes about a minute): it runs with GROVEFLOW_BUILD_TESTS=1,
which `make test` sets.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from groveflow.local.template import read_template
from test_deploy_build import BUDGET_BYTES, MB, function_sizes

ROOT = Path(__file__).resolve().parents[1]
SAM = ROOT / ".venv-sam" / "bin" / "sam"
# ELF's e_machine (the System V ABI's machine numbers) by Lambda architecture.
ELF_MACHINES = {62: "x86_64", 183: "arm64"}


def elf_architecture(path: Path) -> str | None:
    """The Lambda architecture an ELF object is built for (``arm64``, ``x86_64``, or the
    e_machine number as text for another one); None if ``path`` is not ELF."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, str(machine))


def compiled_extensions(layer: Path) -> list[Path]:
    """Every shared object in a built layer: ``*.so`` and versioned ``*.so.N`` files."""
    return sorted(
        p for p in layer.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name)
    )


def test_the_elf_check_tells_the_architectures_apart(tmp_path: Path) -> None:
    # GIVEN the first bytes of an x86-64 and an aarch64 shared object, and a text file
    def header(machine: int) -> bytes:
        return b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00" + machine.to_bytes(2, "little")

    (tmp_path / "x.so").write_bytes(header(62) + b"\x00" * 40)
    (tmp_path / "a.so.1").write_bytes(header(183) + b"\x00" * 40)
    (tmp_path / "notes.txt").write_text("not ELF")
    # THEN each is named for what it is
    assert [p.name for p in compiled_extensions(tmp_path)] == ["a.so.1", "x.so"]
    assert elf_architecture(tmp_path / "x.so") == "x86_64"
    assert elf_architecture(tmp_path / "a.so.1") == "arm64"
    assert elf_architecture(tmp_path / "notes.txt") is None


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the stack for arm64 into a temporary directory, as `make deploy` builds
    it: the template's Architecture and the layers' ARCHITECTURE together."""
    if os.environ.get("GROVEFLOW_BUILD_TESTS") != "1":
        pytest.skip(
            "slow (downloads the aarch64 wheels, builds both layers): GROVEFLOW_BUILD_TESTS=1"
        )
    if not SAM.exists():
        pytest.skip("no .venv-sam: `make sam-venv` installs aws-sam-cli")
    build = tmp_path_factory.mktemp("arm64") / "build"
    environment = {
        **os.environ,
        "ARCHITECTURE": "arm64",
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    done = subprocess.run(
        [
            str(SAM),
            "build",
            "--parameter-overrides",
            "Architecture=arm64",
            "--build-dir",
            str(build),
        ],
        check=False,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build


def _layers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    }


def test_the_arm64_build_holds_only_aarch64_extensions(arm64_build: Path) -> None:
    # GIVEN the arm64 build's template and layers
    template = read_template(arm64_build / "template.yaml")
    layers = _layers(template)
    assert set(layers) == {"DependenciesLayer", "IngestLayer"}
    for logical_id, resource in layers.items():
        # THEN sam build built each layer for arm64
        assert resource["Metadata"]["BuildArchitecture"] == "arm64", logical_id
        extensions = compiled_extensions(arm64_build / resource["Properties"]["ContentUri"])
        # AND every compiled extension in it is aarch64 (numpy's, scipy's, pyarrow's...)
        assert len(extensions) > 20, (logical_id, extensions)
        other = {
            str(p.relative_to(arm64_build)): elf_architecture(p)
            for p in extensions
            if elf_architecture(p) != "arm64"
        }
        assert other == {}, logical_id


def test_each_arm64_function_with_its_layers_fits_lambdas_limit(arm64_build: Path) -> None:
    sizes = function_sizes(read_template(arm64_build / "template.yaml"), arm64_build)
    report = {name: f"{size['total'] / MB:.1f} MiB" for name, size in sizes.items()}
    print("arm64 build, unzipped per function with its layers:", report)
    assert len(sizes) == 10
    over = {name: size for name, size in sizes.items() if size["total"] > BUDGET_BYTES}
    assert over == {}, f"over {BUDGET_BYTES / MB:.0f} MiB: {over}"

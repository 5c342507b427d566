"""Docs that cannot rot: every shell and Python block of README.md and docs/*.md, run.

Each page's blocks run in order, as a reader would run them, in a directory of the page's own
(a copy of ``events/`` and ``.venv`` pointing at the venv running the tests), with the local
engine's state in that directory and no AWS credentials or configuration. A block fails its
test on a non-zero exit. Blocks that cannot run here are skipped by name, the reason printed:

- a block holding ``# needs: <reason>`` (an AWS account or a deployed stack);
- the blocks of pages this suite's doc owners do not edit (docs/deploy.md), named in
  ``SKIPPED_BY_NAME`` by their first command: every one needs AWS, or is an installation step
  ``make test`` runs before this test;
- within a block, the installation commands of ``INSTALLED`` (``make test`` itself, which runs
  this test, and the Quick start's venv and ``pip install``, which ``make test`` has done).

``groveflow serve`` blocks start the server in the background and stop it themselves; the test
also ends every process a block left behind (its process group). The port a block names (8083)
is replaced by a free one, so a server already listening there is never reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV = Path(sys.prefix)
SHELLS = {"bash", "sh", "shell"}
RUNNABLE = SHELLS | {"python"}
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NEEDS = re.compile(r"#\s*needs:\s*(.+)")
DOC_PORT = "8083"
BLOCK_TIMEOUT_SECONDS = 600

AWS = "needs: aws (an AWS account, or the deployed stack's outputs)"
CI_BUILD = (
    "installation step: `make test` (CI's .ci/run) runs make build before the suite, and "
    "tests/test_journey_deploy.py runs make sam-venv, validate and build as docs/deploy.md "
    "writes them, in an application from groveflow init"
)
SKIPPED_BY_NAME = {
    ("docs/deploy.md", "aws lambda get-account-settings \\"): AWS,
    ("docs/deploy.md", "make sam-venv"): CI_BUILD,
    ("docs/deploy.md", 'export PATH="$PWD/.venv-sam/bin:$PATH"'): CI_BUILD,
    ("docs/deploy.md", "make deploy"): AWS,
    ("docs/deploy.md", "aws cloudformation describe-stacks --stack-name groveflow \\"): AWS,
    ("docs/deploy.md", "EXEC_ARN=$(aws stepfunctions start-execution --state-machine-arn"): AWS,
    ("docs/deploy.md", "groveflow train events/train-digits.json --stack groveflow"): AWS,
    ("docs/deploy.md", 'sed "s/YOUR-STACK-BUCKET/$BUCKET/" events/train-parquet-s3.json'): AWS,
    ("docs/deploy.md", 'aws stepfunctions describe-execution --execution-arn "$EXEC_ARN" \\'): AWS,
    ("docs/deploy.md", 'aws s3 ls "s3://$BUCKET/'): AWS,
    ("docs/deploy.md", 'aws stepfunctions start-execution --state-machine-arn "$SM_ARN" \\'): AWS,
    ("docs/deploy.md", 'aws s3 cp "s3://$BUCKET/runs/digits-demo/model/" ./digits-model/'): AWS,
    ("docs/deploy.md", "PREDICT_ARN=$(aws cloudformation describe-stacks --stack-name"): AWS,
    ("docs/deploy.md", "sam delete --stack-name groveflow"): AWS,
}
"""Blocks skipped by (page, the start of their first command), for pages without markers."""

INSTALLED = {
    "python3 -m venv .venv": "installation step: `make test` (make install) created .venv",
    ".venv/bin/pip install -e .": "installation step: `make test` (make install) installed it",
    "make test": "the test suite itself, which runs this test (CI's .ci/run)",
}
"""Commands of a block not run, by name: what ``make test`` did before this test runs."""


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    text: str

    @property
    def first_command(self) -> str:
        for line in self.text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
        return ""

    def skip_reason(self) -> str | None:
        marked = NEEDS.search(self.text)
        if marked:
            return f"needs: {marked.group(1).strip()}"
        for (page, start), reason in SKIPPED_BY_NAME.items():
            if page == self.page and self.first_command.startswith(start):
                return reason
        return None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, with their language and first line."""
    text = path.read_text()
    return [
        Block(
            page=str(path.relative_to(ROOT)),
            line=text.count("\n", 0, found.start()) + 1,
            language=found.group(1).lower(),
            text=found.group(2),
        )
        for found in BLOCK.finditer(text)
    ]


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if block.language in RUNNABLE]
JSON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "json"]


def _without_installation(script: str) -> tuple[str, list[str]]:
    """The script with the commands of ``INSTALLED`` left out, and what was left out."""
    kept, skipped = [], []
    for line in script.splitlines():
        code, hash_, comment = line.partition("  #")
        commands = [part.strip() for part in code.split("&&")]
        ran = [c for c in commands if c not in INSTALLED]
        skipped += [f"{c!r}: {INSTALLED[c]}" for c in commands if c in INSTALLED]
        if len(ran) == len(commands):
            kept.append(line)
        elif any(ran):
            kept.append(" && ".join(c for c in ran if c) + (hash_ + comment if hash_ else ""))
    return "\n".join(kept) + "\n", skipped


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each page's directory, made on its first block: what a reader's clone offers a block."""
    return {}


def _workdir(workdirs: dict[str, Path], page: str, factory: pytest.TempPathFactory) -> Path:
    if page not in workdirs:
        where = factory.mktemp(re.sub(r"\W", "-", page))
        shutil.copytree(ROOT / "events", where / "events")
        (where / ".venv").symlink_to(VENV)
        (where / "home").mkdir()
        workdirs[page] = where
    return workdirs[page]


def _environment(where: Path) -> dict[str, str]:
    """This process's environment, minus AWS's, with fake credentials and no AWS config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GROVEFLOW_"))}
    env.update(
        PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(where / "home"),
        AWS_ACCESS_KEY_ID="docs-test",
        AWS_SECRET_ACCESS_KEY="docs-test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(where / "home" / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(where / "home" / "no-aws-credentials"),
        MPLBACKEND="Agg",
    )
    return env


def _run(command: list[str], where: Path) -> subprocess.CompletedProcess[str]:
    """Run in a process group of its own, then end whatever the block left running."""
    process = subprocess.Popen(
        command,
        cwd=where,
        env=_environment(where),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=BLOCK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\n(stopped after {BLOCK_TIMEOUT_SECONDS} s)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # a background server the block left
    return subprocess.CompletedProcess(command, process.returncode, output, "")


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_the_block_runs(
    block: Block, workdirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN a block of a page, in that page's directory (its earlier blocks have run there)
    reason = block.skip_reason()
    if reason:
        pytest.skip(f"{block.page}:{block.line} {block.first_command!r}: {reason}")
    where = _workdir(workdirs, block.page, tmp_path_factory)
    script, left_out = _without_installation(block.text)
    for skipped in left_out:
        print(f"{block.page}:{block.line} not run: {skipped}")
    if not any(line.strip() and not line.lstrip().startswith("#") for line in script.splitlines()):
        pytest.skip(f"{block.page}:{block.line}: " + "; ".join(left_out))
    # WHEN it runs as a reader runs it: a shell block in bash, a Python block as a script file
    if block.language in SHELLS:
        script = script.replace(DOC_PORT, _free_port())
        path = where / f"block-{block.line}.sh"
        path.write_text(script)
        done = _run(["bash", "-e", "-o", "pipefail", str(path)], where)
    else:
        path = where / f"block-{block.line}.py"
        path.write_text(script)
        done = _run([sys.executable, str(path)], where)
    # THEN it exits with 0, and prints what its page says it prints
    assert done.returncode == 0, (
        f"{block.page}:{block.line} exited {done.returncode}:\n{done.stdout}"
    )
    for expected in _said_to_print(block):
        assert expected in done.stdout, (expected, done.stdout)


def _said_to_print(block: Block) -> list[str]:
    """What the page says the block prints: the Quick start's holdout accuracy."""
    if block.page != "README.md" or not block.first_command.startswith("python3 -m venv"):
        return []
    said = re.search(r"holdout accuracy \((\d\.\d+) on", (ROOT / block.page).read_text())
    assert said, "README.md no longer says the Quick start's holdout accuracy"
    return [f"accuracy {said.group(1)}"]


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=lambda b: f"{b.page}:{b.line}")
def test_a_json_block_is_json(block: Block) -> None:
    json.loads(block.text)


def test_every_block_skipped_by_name_is_still_on_its_page() -> None:
    # GIVEN the blocks named in SKIPPED_BY_NAME
    # WHEN each is looked for on its page
    found = {
        (page, start)
        for page, start in SKIPPED_BY_NAME
        if any(b.page == page and b.first_command.startswith(start) for b in RUN_BLOCKS)
    }
    # THEN none is stale: a renamed block would otherwise run unnoticed, or not at all
    assert set(SKIPPED_BY_NAME) == found, set(SKIPPED_BY_NAME) - found


def test_the_pages_hold_runnable_blocks() -> None:
    # the collection itself: README's Quick start and docs/ blocks are found
    pages = {block.page for block in RUN_BLOCKS}
    assert {"README.md", "docs/deploy.md"} <= pages, pages
    assert any(b.page == "README.md" and "make test" in b.text for b in RUN_BLOCKS)


def test_a_failing_command_fails_its_block_and_installation_alone_is_left_out(
    tmp_path: Path,
) -> None:
    # GIVEN the Quick start's first command, and a block whose middle command fails
    quick_start = (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/groveflow train x\n"
    )
    failing = tmp_path / "failing.sh"
    failing.write_text("true\nfalse\necho never\n")
    (tmp_path / "home").mkdir()
    # WHEN the installation steps are left out and the failing block runs
    script, left_out = _without_installation(quick_start)
    done = _run(["bash", "-e", "-o", "pipefail", str(failing)], tmp_path)
    # THEN only the training command remains, and the failing block exits non-zero
    assert script == ".venv/bin/groveflow train x\n"
    assert [line.split(":")[0] for line in left_out] == [
        "'python3 -m venv .venv'",
        "'.venv/bin/pip install -e .'",
    ]
    assert done.returncode != 0
    assert "never" not in done.stdout


def _anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a page (lower case, punctuation dropped, spaces -)."""
    headings = re.findall(r"^#+\s+(.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_a_page_reaches_a_file_and_heading(page: Path) -> None:
    # GIVEN the page's relative links (a moved section must not leave a dead link)
    links = [
        link
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        if not link.startswith(("http://", "https://"))
    ]
    # WHEN each is resolved from the page's folder
    dead = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.is_file() or (anchor and anchor not in _anchors(target)):
            dead.append(link)
    # THEN every one reaches a file, and the heading it names
    assert dead == [], dead

"""A script that trains at module level, without ``if __name__ == "__main__":``, works.

The local engine's workers are started by ``multiprocessing``, which would import the
caller's main module in each of them: the script ran again in every worker (its prints
too) and the workers died starting engines of their own; a script read from stdin failed
in the workers (no file ``<stdin>``). The workers now leave the main module alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """\
import groveflow
print("module level ran")
result = groveflow.train(
    {"data": {"uri": "sklearn:iris"}, "n_trees": 4, "grove_size": 2, "run_id": "no-guard"}
)
print("status", result.status, result.error)
if result.error: print(result.cause)
"""


def _run(command: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_script_without_the_main_guard_trains_and_runs_its_module_once(tmp_path: Path) -> None:
    # GIVEN a script that trains at module level, with no __main__ guard
    script = tmp_path / "train_iris.py"
    script.write_text(SCRIPT)
    # WHEN it is run as a file
    completed = _run([sys.executable, str(script)], tmp_path)
    # THEN the run succeeds, and the module's print happened once (not once per worker)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "status SUCCEEDED None" in completed.stdout, output
    assert output.count("module level ran") == 1, output
    assert "Traceback" not in output
    logs = "".join(p.read_text() for p in (tmp_path / ".groveflow" / "logs").glob("*.log"))
    assert "module level ran" not in logs


def test_a_script_read_from_stdin_trains(tmp_path: Path) -> None:
    # GIVEN the same script, piped to python on stdin (no file for a worker to import)
    # WHEN it runs
    completed = _run([sys.executable, "-"], tmp_path, stdin=SCRIPT)
    # THEN it trains as the file does
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "status SUCCEEDED None" in completed.stdout, output
    assert output.count("module level ran") == 1, output

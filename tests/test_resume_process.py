"""Resume across processes: a new process, whose engine starts empty, resumes from the state dir.

The run fails in this process (five groves crash on every attempt); a child process with
its own engine and its own S3 server, which has never seen the run, resumes it from the
state directory alone. Which groves it built is read from its workers' recorded writes,
not from the handlers' ``reused`` flag.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, unique_name
from evidence import SMALL, At, body, faults, has, train
from groveflow.layout import keys
from groveflow.local.faults import Fault

CHILD = """
import json, sys
from pathlib import Path

from groveflow.layout import keys
from groveflow.local import LocalEngine, access_log
from groveflow.local.faults import FaultInjector

if __name__ == "__main__":
    root, state_dir, record, run_id, request = sys.argv[1:6]
    with LocalEngine(
        Path(root), workers=2, state_dir=Path(state_dir),
        faults=FaultInjector(record_to=Path(record)),
    ) as engine:
        listing = engine.s3.list_objects_v2(Bucket=engine.bucket, Prefix=keys.run_prefix(run_id))
        empty = listing.get("KeyCount", 0) == 0
        result = engine.run(
            "TrainStateMachine", {**json.loads(request), "run_id": run_id}, name=run_id + "-again"
        )
        forest = engine.s3.get_object(Bucket=engine.bucket, Key=keys.forest(run_id))["Body"].read()
    written = sorted(
        c["key"] for c in access_log.read(Path(record))
        if c.get("operation") == "PutObject" and c["function"] == "BuildGroveFunction"
    )
    import hashlib
    print(json.dumps({
        "empty_before": empty, "status": result.status, "error": result.error,
        "built": written, "forest_sha256": hashlib.sha256(forest).hexdigest(),
    }))
"""


class OutOfMemoryGroves(At):
    """Every attempt of the given groves runs out of memory (retried once, not 60 times as a
    crash would be)."""

    def __init__(self, groves: set[int]) -> None:
        super().__init__("BuildGroveFunction", Fault("oom"))
        object.__setattr__(self, "groves", groves)

    def decide(self, function: str, payload: dict[str, Any], attempt: int) -> Fault | None:
        failing = function == "BuildGroveFunction" and payload.get("grove") in self.groves  # type: ignore[attr-defined]
        return Fault("oom") if failing else None


@pytest.fixture(scope="module")
def clean_sha256(engine: Any) -> str:
    run_id = unique_name("clean-resume")
    assert train(engine, SMALL, run_id).status == "SUCCEEDED"
    return hashlib.sha256(body(engine, keys.forest(run_id))).hexdigest()


def test_a_new_process_resumes_from_the_state_dir_and_builds_only_the_missing_groves(
    engine: Any, state_dir: Path, tmp_path: Path, clean_sha256: str
) -> None:
    # GIVEN a run stopped midway in this process: groves 3 and 4 fail on every attempt
    run_id = unique_name("resume-process")
    with faults(engine, OutOfMemoryGroves({3, 4})):
        first = train(engine, SMALL, run_id)
    assert first.status == "FAILED"
    assert not has(engine, keys.manifest(run_id))
    # WHEN a new process, with an engine of its own, reruns it from the state directory
    script = tmp_path / "resume.py"
    script.write_text(CHILD)
    request = json.dumps(SMALL)
    args = [str(ROOT), str(state_dir), str(tmp_path / "calls.jsonl"), run_id, request]
    child = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    resumed = json.loads(child.stdout.strip().splitlines()[-1])
    # THEN its bucket started without the run, it restored the run, built groves 3 and 4 only,
    # and its forest is the clean run's
    assert resumed["empty_before"]
    assert resumed["status"] == "SUCCEEDED", resumed["error"]
    assert resumed["built"] == [keys.grove(run_id, 3), keys.grove(run_id, 4)]
    assert resumed["forest_sha256"] == clean_sha256

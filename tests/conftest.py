"""Shared fixtures: one local engine per test session, started from this checkout's template."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """An execution input from events/."""
    value: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return value


_names = iter(range(10**9))


def unique_name(prefix: str) -> str:
    """A fresh execution/run name (executions must be uniquely named)."""
    return f"{prefix}-{int(time.time())}-{next(_names)}"


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("groveflow-state")


@pytest.fixture(scope="session")
def engine(state_dir: Path) -> Iterator[Any]:
    from groveflow.local import LocalEngine

    with LocalEngine(ROOT, workers=2, state_dir=state_dir) as running:
        yield running


@pytest.fixture
def s3_env(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process's groveflow.storage pointed at the session engine's S3 (for calling
    stage functions directly, as a handler would)."""
    from groveflow import storage

    for name, value in {
        "AWS_ENDPOINT_URL_S3": engine.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    storage._s3.cache_clear()
    yield engine
    storage._s3.cache_clear()

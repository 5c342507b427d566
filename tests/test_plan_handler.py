"""The Plan handler hands the plan the account's unreserved concurrency reader (review of
8dec55b: the clamp was built and tested on plan_run, but the handler never passed it)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from conftest import ROOT


def test_the_plan_handler_clamps_to_the_account_s_unreserved_concurrency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from groveflow import training

    # GIVEN the Plan function's handler as template.yaml names it
    spec = importlib.util.spec_from_file_location("plan_app", ROOT / "functions/plan/app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    asked: dict[str, Any] = {}
    monkeypatch.setattr(app, "plan_run", lambda event, **limits: asked.update(limits) or {})
    monkeypatch.setenv("GROVEFLOW_BUCKET", "bucket")

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    # WHEN it plans
    app.handler.__wrapped__({"request": {}}, Context())
    # THEN the plan may read the account's unreserved concurrency to clamp max_concurrency
    assert asked["account_concurrency"] is training.unreserved_concurrency

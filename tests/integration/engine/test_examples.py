"""The shipped example workflows run end to end on the real worker."""

from __future__ import annotations

import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine.lifecycle import approve_step
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import start_shipped, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


@pytest.mark.parametrize(
    ("amount", "decision", "score", "skipped"),
    [
        (5, "approved", 20, "manual_review"),
        (5000, "review", 0, "auto_approve"),
        (0, "approved", 50, "manual_review"),
    ],
)
def test_example_branching(
    settings: Settings, amount: int, decision: str, score: int, skipped: str
) -> None:
    run = wait_for(start_shipped(settings, "example_branching", {"amount": amount}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"decision": decision, "score": score}
    assert steps_of(run)[skipped].state == "skipped"
    assert steps_of(run)["default_score"].state == ("succeeded" if amount == 0 else "skipped")


def test_example_fanout(settings: Settings) -> None:
    run = wait_for(start_shipped(settings, "example_fanout", {"numbers": [3, 1, 2]}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"squares": [9, 1, 4], "total": 14, "count": 3, "largest": 3}


def test_example_subflow(settings: Settings) -> None:
    run = wait_for(start_shipped(settings, "example_subflow", {"name": "nested"}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"wrapped": "[Hello, Nested!]"}


def test_example_approval(settings: Settings) -> None:
    run_id = start_shipped(settings, "example_approval", {"release": "v2"})
    assert steps_of(wait_for(run_id, ["waiting"]))["gate"].output["prompt"] == "Publish v2?"
    with session_scope() as session:
        result = approve_step(session=session, run_id=run_id, step_id="gate", by="lead")
    flush_outbox(result.outbox_ids)
    run = wait_for(run_id)
    assert run.outputs == {"published": "v2", "approved_by": "lead"}

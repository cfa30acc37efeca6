"""A linear workflow runs through the real broker and worker, and every transition is recorded."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from agent33.db import session_scope
from agent33.definitions.registry import sync_directory
from agent33.engine import service
from agent33.engine.states import RUN_TERMINAL
from agent33.engine.validation import validate_workflow
from agent33.errors import ValidationFailed
from tasks.dispatch import flush_outbox

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


def _start(settings: Any, inputs: dict[str, Any], **kw: Any) -> uuid.UUID:
    with session_scope() as session:
        sync_directory(
            session=session, directory=settings.definitions_dir, validator=validate_workflow
        )
        run, outbox_ids, _ = service.start_run(
            session=session, workflow_name="demo_greeting", inputs=inputs, **kw
        )
        run_id = run.id
    flush_outbox(outbox_ids)
    return run_id


def _wait(run_id: uuid.UUID, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            run = service.get_run(session=session, run_id=run_id)
            if run.state in RUN_TERMINAL:
                return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} not finished in {timeout}s")


def test_demo_workflow_runs_end_to_end(settings: Any) -> None:
    run = _wait(_start(settings, {"name": "  ada lovelace ", "times": 3}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {
        "greeting": "Hello, Ada Lovelace!",
        "summary": "Hello, Ada Lovelace! (3 hellos)",
        "words": 3,
    }
    assert [s.state for s in run.steps] == ["succeeded"] * 3
    assert all(s.attempt == 1 and s.queue == "steps" and s.worker for s in run.steps)
    assert len({s.task_id for s in run.steps}) == 1, "a line of pure steps is one fused message"
    with session_scope() as session:
        events = service.list_events(session=session, run_id=run.id)
    transitions = [(e.step_id, e.to_state) for e in events if e.kind == "step.state"]
    assert transitions == [
        (sid, state)
        for sid in ("normalise", "greet", "summarise")
        for state in ("queued", "running", "succeeded")
    ] or sorted(transitions) == sorted(
        (sid, state)
        for sid in ("normalise", "greet", "summarise")
        for state in ("queued", "running", "succeeded")
    )
    assert [e.to_state for e in events if e.kind == "run.state"] == ["running", "succeeded"]


def test_bad_inputs_are_refused_naming_the_field(settings: Any) -> None:
    with pytest.raises(ValidationFailed) as info:
        _start(settings, {"name": "x", "times": 9})
    assert "inputs.times" in info.value.fields


def test_idempotency_key_returns_the_same_run(settings: Any) -> None:
    first = _start(settings, {"name": "a"}, idempotency_key="k-1")
    second = _start(settings, {"name": "a"}, idempotency_key="k-1")
    assert first == second
    assert _wait(first).state == "succeeded"

"""A linear workflow runs through the real broker and worker, and every transition is recorded."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent33.db import session_scope
from agent33.engine import service
from agent33.errors import ValidationFailed
from tests.integration.engine.helpers import start, start_shipped, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


def _start(settings: Any, inputs: dict[str, Any], **kw: Any) -> uuid.UUID:
    return start_shipped(settings, "demo_greeting", inputs, **kw)


def test_demo_workflow_runs_end_to_end(settings: Any) -> None:
    run = wait_for(_start(settings, {"name": "  ada lovelace ", "times": 3}))
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
    assert wait_for(first).state == "succeeded"


def test_a_chain_longer_than_the_lookahead_runs_in_pieces() -> None:
    from agent33.engine.readiness import SEGMENT_LOOKAHEAD

    length = 2 * SEGMENT_LOOKAHEAD + 10
    steps: list[dict[str, Any]] = [{"id": "gate", "action": "wait", "with": {"seconds": 0}}]
    steps += [
        {
            "id": f"s{n}",
            "action": "transform",
            "depends_on": [steps[-1]["id"] if n == 0 else f"s{n - 1}"],
            "with": {"n": n},
        }
        for n in range(length)
    ]
    run = wait_for(start({"name": "long_chain", "steps": steps}), timeout=60)
    assert run.state == "succeeded", run.error
    assert all(s.state == "succeeded" for s in run.steps)
    chain = [s for s in run.steps if s.step_id != "gate"]
    messages = {s.task_id for s in chain}
    assert 3 <= len(messages) <= 4, "dispatched a lookahead's worth at a time, not step by step"

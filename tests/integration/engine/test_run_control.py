"""Cancel, approve (also inside maps and branches) and resume, through the real worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent33.db import session_scope
from agent33.engine.lifecycle import ControlResult, approve_step, cancel_run, resume_run
from agent33.errors import Conflict, NotFound
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import events_of, start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


def _do(call: Any, **kwargs: Any) -> ControlResult:
    with session_scope() as session:
        result: ControlResult = call(session=session, **kwargs)
    flush_outbox(result.outbox_ids)
    return result


def _gate_flow(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"type": "object"},
        "steps": [
            {"id": "prepare", "action": "transform", "with": {"v": 1}},
            {
                "id": "gate",
                "action": "wait",
                "depends_on": ["prepare"],
                "with": {"approval": True, "prompt": "ship it?"},
            },
            {
                "id": "ship",
                "action": "transform",
                "depends_on": ["gate"],
                "with": {"by": "{{ steps.gate.output.by }}"},
            },
        ],
    }


def test_approval_parks_the_run_then_continues() -> None:
    run_id = start(_gate_flow("gated"))
    waiting = wait_for(run_id, ["waiting"])
    gate = steps_of(waiting)["gate"]
    assert (
        gate.state == "running" and gate.waiting_for == "approval" and gate.lease_expires_at is None
    )
    result = _do(approve_step, run_id=run_id, step_id="gate", comment="lgtm", by="ada")
    assert result.state == "running"
    run = wait_for(run_id)
    assert run.state == "succeeded" and steps_of(run)["ship"].output == {"by": "ada"}
    with pytest.raises(Conflict):
        _do(approve_step, run_id=run_id, step_id="gate", by="ada")


def test_rejection_fails_the_run_naming_who() -> None:
    run_id = start(_gate_flow("rejected"))
    wait_for(run_id, ["waiting"])
    _do(approve_step, run_id=run_id, step_id="gate", approved=False, comment="no", by="bob")
    run = wait_for(run_id)
    assert run.state == "failed" and run.error["message"] == "rejected by bob: no"


def test_approval_inside_a_dynamic_map() -> None:
    doc = {
        "name": "map_gates",
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "fan",
                "action": "parallel_group",
                "with": {
                    "items": [1, 2, 3],
                    "step": {"action": "wait", "with": {"approval": True}},
                },
            },
        ],
    }
    run_id = start(doc)
    wait_for(run_id, ["waiting"])
    for key in ("0", "1", "2"):
        wait_for(run_id, ["waiting", "running"])
        _wait_child_waiting(run_id, f"fan[{key}]")
        _do(approve_step, run_id=run_id, step_id=f"fan[{key}]", by="ops")
    run = wait_for(run_id)
    assert run.state == "succeeded"
    assert [o["approved"] for o in steps_of(run)["fan"].output] == [True, True, True]


def _wait_child_waiting(run_id: uuid.UUID, step_id: str) -> None:
    import time

    for _ in range(200):
        with session_scope() as session:
            from agent33.engine.service import get_run

            step = {s.step_id: s for s in get_run(session=session, run_id=run_id).steps}.get(
                step_id
            )
            if step is not None and step.waiting_for == "approval":
                return
        time.sleep(0.05)
    raise AssertionError(f"{step_id} never waited for approval")


def test_cancel_a_waiting_run() -> None:
    run_id = start(_gate_flow("cancelled_flow"))
    wait_for(run_id, ["waiting"])
    result = _do(cancel_run, run_id=run_id, by="ops")
    assert result.state == "cancelled"
    run = wait_for(run_id)
    states = {k: s.state for k, s in steps_of(run).items()}
    assert states == {"prepare": "succeeded", "gate": "cancelled", "ship": "cancelled"}
    with pytest.raises(Conflict):
        _do(cancel_run, run_id=run_id)
    with pytest.raises(NotFound):
        _do(cancel_run, run_id=uuid.uuid4())


def test_resume_runs_only_what_did_not_succeed() -> None:
    doc = {
        "name": "resumable",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "first", "action": "transform", "with": {"v": "{{ inputs.a }}"}},
            {
                "id": "second",
                "action": "transform",
                "depends_on": ["first"],
                "with": {"v": "{{ 10 // inputs.b }}"},
            },
            {"id": "third", "action": "transform", "depends_on": ["second"], "with": {"v": "done"}},
        ],
    }
    run_id = start(doc, {"a": 1, "b": 0})
    failed = wait_for(run_id)
    assert failed.state == "failed" and failed.error["step"] == "second"
    # the data the step reads is fixed outside the engine, then the run resumes
    from agent33.db.models import Run

    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.inputs = {"a": 1, "b": 5}
    _do(resume_run, run_id=run_id, by="ops")
    resumed = wait_for(run_id)
    assert resumed.state == "succeeded", resumed.error
    steps = steps_of(resumed)
    assert steps["first"].attempt == 1, "a succeeded step ran again"
    assert steps["second"].attempt == 2 and steps["second"].output == {"v": 2}
    kinds = [(e.kind, e.to_state) for e in events_of(run_id) if e.kind == "run.state"]
    assert kinds[-2:] == [("run.state", "running"), ("run.state", "succeeded")]
    with pytest.raises(Conflict):
        _do(resume_run, run_id=run_id)


def test_resume_after_a_rejection_asks_again() -> None:
    run_id = start(_gate_flow("ask_again"))
    wait_for(run_id, ["waiting"])
    _do(approve_step, run_id=run_id, step_id="gate", approved=False, by="bob")
    assert wait_for(run_id).state == "failed"
    _do(resume_run, run_id=run_id, by="ops")
    waiting = wait_for(run_id, ["waiting"])
    assert steps_of(waiting)["gate"].waiting_for == "approval", (
        "a rejected gate must not pass on resume"
    )
    _do(approve_step, run_id=run_id, step_id="gate", by="carol")
    assert wait_for(run_id).state == "succeeded"

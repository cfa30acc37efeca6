"""The reaper: lost workers and lost messages never leave a run `running` forever."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import OutboxMessage, StepRun
from agent33.engine import lease, reaper, runner, service, store
from agent33.engine.states import StepState
from tasks.app import current_settings
from tests.integration.engine.helpers import events_of, save

pytestmark = pytest.mark.usefixtures("committed_db")
LATER = dt.timedelta(hours=2)


def _run_with_first_step(
    state: StepState, deliveries: int, worker: str, first: dict[str, Any] | None = None
) -> uuid.UUID:
    save(
        {
            "name": "reapable",
            "inputs": {"type": "object"},
            "steps": [
                first or {"id": "a", "action": "transform", "with": {}},
                {"id": "b", "action": "transform", "depends_on": ["a"], "with": {}},
            ],
        }
    )
    with session_scope() as session:
        run, _, _ = service.start_run(
            session=session, settings=current_settings(), workflow_name="reapable", inputs={}
        )
        first = run.steps[0]
        if state == StepState.RUNNING:
            store.set_step_state(session=session, step=first, target=StepState.RUNNING)
            first.lease_expires_at = store.lease_deadline(1)
        first.deliveries = deliveries
        first.worker = worker
        return run.id


def _step(run_id: uuid.UUID, step_id: str) -> StepRun:
    with session_scope() as session:
        step = session.scalar(
            select(StepRun).where(StepRun.run_id == run_id, StepRun.step_id == step_id)
        )
        assert step is not None
        return step


def test_expired_lease_is_redelivered_through_the_outbox(settings: Settings) -> None:
    run_id = _run_with_first_step(StepState.RUNNING, 1, "gone-host:1")
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert result.redelivered == 1 and result.failed == 0
    assert _step(run_id, "a").state == "queued"
    with session_scope() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(result.outbox_ids)))
        assert [r.payload["segments"][0][0]["step_id"] for r in rows] == ["a"]


def test_delivery_budget_spent_fails_the_step_and_the_run(settings: Settings) -> None:
    run_id = _run_with_first_step(StepState.RUNNING, settings.max_deliveries, "gone-host:1")
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert result.failed == 1
    step = _step(run_id, "a")
    assert step.state == "failed" and step.error["type"] == "WorkerLost"
    assert "gone-host:1" in step.error["message"]
    with session_scope() as session:
        run = service.get_run(session=session, run_id=run_id)
        assert run.state == "failed" and run.steps[1].state == "cancelled"


def test_lost_message_of_a_ready_queued_step_is_republished(settings: Settings) -> None:
    run_id = _run_with_first_step(StepState.QUEUED, 0, "")
    assert reaper.reap(settings).redelivered == 0, "a fresh queued step must be left alone"
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert result.redelivered == 1, "only `a`: `b` waits for its dependency, whatever its age"
    with session_scope() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(result.outbox_ids)))
        assert [r.payload["segments"][0][0]["step_id"] for r in rows] == ["a"]
    assert _step(run_id, "b").state == "queued"


def test_the_reaper_says_what_it_saw(settings: Settings) -> None:
    dead = f"{socket.gethostname()}:{2**22 + 12345}"  # above any pid_max: a dead process here
    run_id = _run_with_first_step(StepState.RUNNING, 1, dead)
    reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    requeued = [e for e in events_of(run_id) if e.step_id == "a" and e.to_state == "queued"][-1]
    message = requeued.message or ""
    assert "lease expired at " in message and "last heartbeat " in message
    assert f"worker {dead} (dead)" in message
    assert f"redelivering (delivery 2 of {settings.max_deliveries})" in message


def test_runner_and_reaper_spend_the_same_delivery_budget(settings: Settings) -> None:
    """The last delivery the reaper makes is one the runner accepts; past it, both refuse."""
    budget = settings.max_deliveries
    last = _run_with_first_step(StepState.RUNNING, budget - 1, "gone-host:1")
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert (result.redelivered, result.failed) == (1, 0)
    assert runner.run_step(str(_step(last, "a").id), settings).status == "succeeded"
    assert _step(last, "a").deliveries == budget

    spent = _run_with_first_step(StepState.RUNNING, budget, "gone-host:1")
    with session_scope() as session:  # the reaper would fail it; a stray message reaches it first
        step = session.get(StepRun, _step(spent, "a").id)
        assert step is not None
        step.lease_expires_at = store.lease_deadline(-1)
    assert runner.run_step(str(_step(spent, "a").id), settings).status == "failed"
    step = _step(spent, "a")
    assert step.error is not None and step.error["type"] == "WorkerLost"
    assert step.attempt == 0, "the action must not run past the budget"


def test_a_renewed_lease_is_not_reaped(settings: Settings) -> None:
    run_id = _run_with_first_step(StepState.RUNNING, 1, "gone-host:1")
    step = _step(run_id, "a")
    assert lease.renew(step.id, step.attempt, 3600)
    result = reaper.reap(settings, now=store.lease_deadline(60))
    assert (result.redelivered, result.failed) == (0, 0)
    assert _step(run_id, "a").state == "running"


def test_a_retry_waiting_out_its_countdown_is_not_taken_for_lost(settings: Settings) -> None:
    run_id = _run_with_first_step(StepState.RUNNING, 1, "gone-host:1")
    delay = 10 * settings.step_lease_seconds
    with session_scope() as session:  # as schedule_retry leaves it: published with a countdown
        step = session.get(StepRun, _step(run_id, "a").id)
        assert step is not None
        step.attempt = 1
        store.set_step_state(
            session=session, step=step, target=StepState.RETRYING, data={"delay": delay}
        )
        store.set_step_state(session=session, step=step, target=StepState.QUEUED)
    queued_at = _step(run_id, "a").queued_at
    assert queued_at is not None
    early = queued_at + dt.timedelta(seconds=settings.step_lease_seconds + 10)
    assert reaper.reap(settings, now=early).redelivered == 0
    due = queued_at + dt.timedelta(seconds=delay + settings.step_lease_seconds + 1)
    assert reaper.reap(settings, now=due).redelivered == 1


COMMAND = {"id": "a", "action": "run_command", "with": {"argv": ["echo", "charged"]}}


def test_a_command_whose_worker_may_live_is_failed_not_run_twice(settings: Settings) -> None:
    """`run_command` is not safe to repeat: with its worker's fate unknown (another host), the
    reaper fails it (a dead letter to resume by hand) and a stray redelivery does not run it."""
    run_id = _run_with_first_step(StepState.RUNNING, 1, "other-host:7", COMMAND)
    assert runner.run_step(str(_step(run_id, "a").id), settings).status == "duplicate:running"
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert (result.redelivered, result.failed) == (0, 1)
    step = _step(run_id, "a")
    assert step.state == "failed" and step.error["type"] == "PossiblyExecuted"
    assert "not safe to repeat" in step.error["message"] and step.attempt == 0


def test_a_command_whose_worker_is_known_dead_is_redelivered(settings: Settings) -> None:
    dead = f"{socket.gethostname()}:{2**22 + 12345}"  # above any pid_max: a dead process here
    run_id = _run_with_first_step(StepState.RUNNING, 1, dead, COMMAND)
    result = reaper.reap(settings, now=store.lease_deadline(0) + LATER)
    assert (result.redelivered, result.failed) == (1, 0)
    assert _step(run_id, "a").state == "queued"

"""Leases follow the work: a long step runs once, a step that cannot start fails for good, and a
lost message is republished a bounded number of times; through the real broker and worker."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import object_session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import StepRun
from agent33.engine import lease, reaper, service, store
from agent33.engine.actions import ActionContext, register
from agent33.engine.states import StepState
from tasks.app import swap_settings
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import events_of, save, start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")
LEASE = 1  # seconds: the heartbeat renews every third of it
EXECUTIONS: dict[str, int] = {}
RUNNING_NOW: dict[str, int] = {}
MOST_AT_ONCE: dict[str, int] = {}
_lock = threading.Lock()


@register("test_long_effect")
def long_effect(context: ActionContext) -> Any:
    """A side effect counted per run, and how many copies of it ran at the same time."""
    with _lock:
        EXECUTIONS[context.run_id] = EXECUTIONS.get(context.run_id, 0) + 1
        RUNNING_NOW[context.run_id] = RUNNING_NOW.get(context.run_id, 0) + 1
        MOST_AT_ONCE[context.run_id] = max(
            MOST_AT_ONCE.get(context.run_id, 0), RUNNING_NOW[context.run_id]
        )
    try:
        time.sleep(float(context.params["seconds"]))
    finally:
        with _lock:
            RUNNING_NOW[context.run_id] -= 1
    return {"attempt": context.attempt}


@register("test_nul_output")
def nul_output(context: ActionContext) -> Any:
    """JSON-valid, but PostgreSQL's jsonb refuses the NUL: the outcome cannot be stored."""
    return {"text": "before\x00after"}


@pytest.fixture
def short_lease(settings: Settings) -> Iterator[Settings]:
    """The worker (in this process) and the reaper both run with a one-second lease."""
    own = settings.replace(step_lease_seconds=LEASE)
    previous = swap_settings(own)
    try:
        yield own
    finally:
        if previous is not None:
            swap_settings(previous)


def _wf(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "inputs": {"type": "object"}, "steps": steps}


def _reap_until_done(run_id: uuid.UUID, settings: Settings, timeout: float = 30.0) -> None:
    """Run the reaper every 0.2 s (publishing what it redelivers) until the run ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flush_outbox(reaper.reap(settings).outbox_ids)
        with session_scope() as session:
            if service.get_run(session=session, run_id=run_id).state in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                return
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end in {timeout}s")


@pytest.mark.security
def test_a_step_running_three_times_its_lease_runs_once(short_lease: Settings) -> None:
    run_id = start(
        _wf(
            "long_step",
            [
                {"id": "long", "action": "test_long_effect", "with": {"seconds": 3 * LEASE}},
                {"id": "after", "action": "transform", "depends_on": ["long"], "with": {"v": 1}},
            ],
        )
    )
    _reap_until_done(run_id, short_lease)
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    assert EXECUTIONS[str(run_id)] == 1, "the step's side effect happened more than once"
    assert MOST_AT_ONCE[str(run_id)] == 1
    long = steps_of(run)["long"]
    assert (long.attempt, long.deliveries) == (1, 1)
    assert long.heartbeat_at is not None and long.started_at is not None
    assert long.heartbeat_at > long.started_at + dt.timedelta(seconds=LEASE), "no heartbeat"
    requeued = [e for e in events_of(run_id) if e.step_id == "long" and e.to_state == "queued"]
    assert len(requeued) == 1, [e.message for e in requeued]  # the first dispatch only


@pytest.mark.security
def test_a_second_delivery_while_the_step_runs_does_not_run_it_again(
    short_lease: Settings,
) -> None:
    """As Redis does after its visibility timeout: the same step's message delivered again to
    a worker (here the same process) while the first copy is still running, past its lease."""
    run_id = start(
        _wf("redelivered", [{"id": "long", "action": "test_long_effect", "with": {"seconds": 3}}])
    )
    deadline = time.monotonic() + 10
    while EXECUTIONS.get(str(run_id)) != 1:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    time.sleep(1.5 * LEASE)  # the lease first granted has passed; only the heartbeat holds it
    step = _step_of(run_id)
    with session_scope() as session:
        row = session.get(StepRun, step.id)
        assert row is not None
        definition = _definition_of(row)
        outbox_ids = [store.enqueue_step(session=session, step=row, definition=definition)]
    flush_outbox(outbox_ids)
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    assert EXECUTIONS[str(run_id)] == 1 and MOST_AT_ONCE[str(run_id)] == 1
    assert (steps_of(run)["long"].attempt, steps_of(run)["long"].deliveries) == (1, 1)


def _definition_of(step: StepRun) -> Any:
    from agent33.engine.workflows import step_definition, workflow_of

    session = object_session(step)
    assert session is not None
    return step_definition(session, workflow_of(session, step.run), step)


# Python-level failures (OverflowError here) whatever the expression module maps them to, and
# a rendered value that only the database refuses (at the claim's commit).
PATHOLOGICAL = {
    "overflowing power": ("with", "{{ (inputs.x * 1.0) ** 400 }}", "out of range"),
    "range past the sandbox's limit": ("with", "{{ range(inputs.n) | list }}", "range"),
    "in a when": ("when", "(inputs.x * 1.0) ** 400 > 1", "out of range"),
    "a value PostgreSQL cannot store": ("with", '{{ "%c" % 0 }}', "could not be started"),
}


@pytest.mark.security
@pytest.mark.parametrize("where,expression,expected", PATHOLOGICAL.values(), ids=PATHOLOGICAL)
def test_a_step_whose_expression_raises_anything_fails_and_is_not_republished(
    settings: Settings, where: str, expression: str, expected: str
) -> None:
    step: dict[str, Any] = {"id": "calc", "action": "transform", "with": {"v": expression}}
    if where == "when":
        step = {"id": "calc", "action": "transform", "when": expression, "with": {"v": 1}}
    run_id = start(_wf("bad_expression", [step]), {"x": 10, "n": 10**6})
    run = wait_for(run_id)
    calc = steps_of(run)["calc"]
    assert run.state == "failed" and calc.state == "failed"
    assert calc.error is not None and calc.error["retryable"] is False
    assert expected in calc.error["message"] and "\x00" not in calc.error["message"]
    # Much later, the reaper finds nothing to republish or redeliver.
    later = store.lease_deadline(0) + dt.timedelta(days=1)
    result = reaper.reap(settings, now=later)
    assert (result.redelivered, result.failed) == (0, 0)
    assert not [e for e in events_of(run_id) if e.kind == "step.republished"]


@pytest.mark.security
def test_an_outcome_that_cannot_be_stored_fails_the_step_once(settings: Settings) -> None:
    run_id = start(_wf("nul_out", [{"id": "out", "action": "test_nul_output", "with": {}}]))
    run = wait_for(run_id)
    out = steps_of(run)["out"]
    assert run.state == "failed" and out.state == "failed"
    assert out.error is not None and "could not be recorded" in out.error["message"]
    assert (out.attempt, out.deliveries, out.lease_expires_at) == (1, 1, None)


@pytest.mark.security
def test_a_queued_step_whose_message_keeps_getting_lost_fails_after_the_budget(
    settings: Settings,
) -> None:
    save(_wf("lost", [{"id": "a", "action": "transform", "with": {"v": 1}}]))
    with session_scope() as session:  # the outbox row is never published: the message is lost
        run, _, _ = service.start_run(
            session=session, settings=settings, workflow_name="lost", inputs={}
        )
        run_id = run.id
    budget = settings.max_deliveries
    now = store.lease_deadline(0)
    for _ in range(budget + 1):
        waited = settings.step_lease_seconds * 2 ** _step_of(run_id).republishes + 1
        now += dt.timedelta(seconds=waited)
        reaper.reap(settings, now=now)  # what it republishes is never published either
    step = _step_of(run_id)
    assert step.state == "failed" and step.republishes == budget
    assert step.error is not None and step.error["type"] == "MessageLost"
    assert f"republished {budget} times" in step.error["message"]
    republished = [e.message for e in events_of(run_id) if e.kind == "step.republished"]
    assert len(republished) == budget and f"republish {budget} of {budget}" in republished[-1]
    far = now + dt.timedelta(days=30)
    assert reaper.reap(settings, now=far).redelivered == 0


def test_a_republish_too_soon_after_the_last_is_not_made(settings: Settings) -> None:
    save(_wf("lost_soon", [{"id": "a", "action": "transform", "with": {"v": 1}}]))
    with session_scope() as session:
        run, _, _ = service.start_run(
            session=session, settings=settings, workflow_name="lost_soon", inputs={}
        )
        run_id = run.id
    first = store.lease_deadline(settings.step_lease_seconds + 1)
    assert reaper.reap(settings, now=first).redelivered == 1
    # The second waits twice the lease after the first.
    soon = first + dt.timedelta(seconds=settings.step_lease_seconds + 1)
    assert reaper.reap(settings, now=soon).redelivered == 0
    assert _step_of(run_id).republishes == 1


def test_the_heartbeat_stops_renewing_a_step_it_no_longer_holds(short_lease: Settings) -> None:
    save(_wf("held", [{"id": "a", "action": "transform", "with": {"v": 1}}]))
    with session_scope() as session:
        run, _, _ = service.start_run(
            session=session, settings=short_lease, workflow_name="held", inputs={}
        )
        step = run.steps[0]
        store.set_step_state(session=session, step=step, target=StepState.RUNNING)
        step.attempt = 2
        step.lease_expires_at = store.lease_deadline(0)
        step_run_id = step.id
    assert lease.renew(step_run_id, 2, 60)
    renewed = _step_of_id(step_run_id)
    assert renewed.lease_expires_at is not None and renewed.heartbeat_at is not None
    assert renewed.lease_expires_at > store.lease_deadline(50)
    assert not lease.renew(step_run_id, 1, 60), "an older attempt's heartbeat must not renew"


def _step_of(run_id: uuid.UUID) -> StepRun:
    with session_scope() as session:
        step = session.scalar(select(StepRun).where(StepRun.run_id == run_id))
        assert step is not None
        return step


def _step_of_id(step_run_id: uuid.UUID) -> StepRun:
    with session_scope() as session:
        step = session.get(StepRun, step_run_id)
        assert step is not None
        return step

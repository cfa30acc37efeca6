"""Run and step rows: state transitions with their events, the outbox, row locks.

Every function takes `session=` and never commits; the caller's `session_scope` is the boundary.
What becomes ready when a step ends is decided in `readiness`; creating a run in `service`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from agent33 import eventbus
from agent33.automation import webhooks_out
from agent33.db.base import utcnow
from agent33.db.models import OutboxMessage, Run, RunEvent, StepRun
from agent33.definitions.models import StepDef
from agent33.engine import planner
from agent33.engine.states import (
    RUN_TERMINAL,
    STEP_TERMINAL,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from agent33.errors import NotFound
from agent33.observability import metrics, tracing


def add_event(
    *,
    session: Session,
    run_id: uuid.UUID,
    kind: str,
    step_id: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        RunEvent(
            run_id=run_id,
            step_id=step_id,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            message=message,
            data=data,
        )
    )


FREED_KEYS = "agent33.admission.freed_keys"  # session.info: (workflow, key) freed this transaction


def set_run_state(
    *, session: Session, run: Run, target: RunState, message: str | None = None
) -> None:
    check_run_transition(run.state, target)
    add_event(
        session=session,
        run_id=run.id,
        kind="run.state",
        from_state=run.state,
        to_state=target.value,
        message=message,
    )
    run.state = target.value
    now = utcnow()
    if target is RunState.RUNNING and run.started_at is None:
        run.started_at = now
    if target in RUN_TERMINAL:
        run.finished_at = now
        if run.concurrency_key is not None:  # admission runs just before the commit
            session.info.setdefault(FREED_KEYS, set()).add((run.workflow_name, run.concurrency_key))
        metrics.after_commit(session.info, metrics.run_finished, run.workflow_name, target.value)
    event = webhooks_out.RUN_EVENTS.get(target.value)
    if event is not None:  # rare transitions only: the hot path never looks
        webhooks_out.record_event(session=session, run=run, event_type=event, message=message)
        metrics.after_commit(
            session.info, eventbus.publish, event, webhooks_out.summary(run, None, message)
        )


def set_step_state(
    *,
    session: Session,
    step: StepRun,
    target: StepState,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    check_step_transition(step.step_id, step.state, target)
    add_event(
        session=session,
        run_id=step.run_id,
        step_id=step.step_id,
        kind="step.state",
        from_state=step.state,
        to_state=target.value,
        message=message,
        data=data,
    )
    previous = step.state
    step.state = target.value
    now = utcnow()
    if target is StepState.QUEUED:
        step.queued_at = now
    elif target is StepState.RUNNING:
        if previous == StepState.RUNNING:
            metrics.after_commit(session.info, metrics.step_redelivered, step.action)
        step.started_at = now
    elif target is StepState.RETRYING:
        metrics.after_commit(session.info, metrics.step_retried, step.action)
    elif target in STEP_TERMINAL:
        ran = previous == StepState.RUNNING and step.started_at is not None
        seconds = (now - step.started_at).total_seconds() if ran and step.started_at else 0.0
        metrics.after_commit(session.info, metrics.step_ended, step.action, target.value, seconds)
        step.finished_at = now
        step.lease_expires_at = None
    if target is StepState.FAILED:
        data = {"run_id": str(step.run_id), "step": step.step_id, "message": message}
        metrics.after_commit(session.info, eventbus.publish, "step.failed", data)
    if target is StepState.FAILED and webhooks_out.any_active(session):
        run = session.get(Run, step.run_id)  # in the identity map: the step's run is locked
        if run is not None:
            webhooks_out.record_event(
                session=session, run=run, event_type="step.failed", step=step, message=message
            )


def step_states(
    *, session: Session, run_id: uuid.UUID, only: Iterable[str] | None = None
) -> dict[str, str]:
    """Top-level step id -> state as plain tuples (optionally only some steps): the hot path
    never loads every step row of a run."""
    query = select(StepRun.step_id, StepRun.state).where(
        StepRun.run_id == run_id, StepRun.parent_id.is_(None)
    )
    if only is not None:
        wanted = list(only)
        if not wanted:
            return {}
        query = query.where(StepRun.step_id.in_(wanted))
    return {step_id: state for step_id, state in session.execute(query)}


def enqueue(*, session: Session, run_id: uuid.UUID, payload: dict[str, Any]) -> int:
    """An outbox row; it carries the current trace, so a later publish (the relay's) joins it."""
    carrier = tracing.carrier()
    if carrier:
        payload = {**payload, "trace": carrier}
    priority = _priority(session, run_id)
    if priority:
        payload = {**payload, "priority": priority}
    message = OutboxMessage(run_id=run_id, payload=payload)
    session.add(message)
    session.flush()
    return message.id


def _priority(session: Session, run_id: uuid.UUID) -> int:
    """The run's priority: from the identity map when the run is loaded (the hot path: it
    is locked), else one read."""
    loaded = session.identity_map.get(identity_key(Run, run_id))
    if isinstance(loaded, Run):
        return loaded.priority or 0
    return int(session.scalar(select(Run.priority).where(Run.id == run_id)) or 0)


def enqueue_step(
    *, session: Session, step: StepRun, definition: StepDef, countdown: float | None = None
) -> int:
    """The outbox row publishing one step on its own (retry, wait, fallback, redelivery)."""
    payload: dict[str, Any] = {"segments": [[planner.entry(step, definition)]]}
    if countdown is not None:
        payload["countdown"] = countdown
    return enqueue(session=session, run_id=step.run_id, payload=payload)


def lock_run(*, session: Session, run_id: uuid.UUID) -> Run:
    """The run row locked FOR UPDATE: serialises completion of parallel branches."""
    run = session.scalar(select(Run).where(Run.id == run_id).with_for_update())
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    return run


_LOCKED = "agent33.store.locked_steps"


def lock_step(*, session: Session, step_run_id: uuid.UUID) -> tuple[StepRun, Run] | None:
    """A step and its run, both rows locked (one query; the run's row first): after waiting
    for a lock PostgreSQL re-reads only the rows the query locks, so locking the step too is
    what makes its state the latest committed one. None when the step is gone. A step
    `lock_steps` loaded in this transaction is answered without a query (locked until the
    commit)."""
    preloaded: dict[uuid.UUID, tuple[StepRun, Run]] | None = session.info.get(_LOCKED)
    if preloaded is not None and step_run_id in preloaded:
        return preloaded[step_run_id]
    row = session.execute(
        select(Run, StepRun)
        .join(StepRun, StepRun.run_id == Run.id)
        .where(StepRun.id == step_run_id)
        .with_for_update(of=(Run, StepRun))
    ).first()
    if row is None:
        return None
    run, step = row
    return step, run


def lock_steps(*, session: Session, step_run_ids: Iterable[uuid.UUID]) -> None:
    """Lock the runs of these steps and load the steps, in one query: a batch of siblings then
    claims each without a round trip of its own. Steps that are gone are simply not loaded."""
    wanted = list(step_run_ids)
    rows = session.execute(
        select(Run, StepRun)
        .join(StepRun, StepRun.run_id == Run.id)
        .where(StepRun.id.in_(wanted))
        .order_by(Run.id, StepRun.id)
        .with_for_update(of=(Run, StepRun))
    ).all()
    preloaded = session.info.setdefault(_LOCKED, {})
    for run, step in rows:
        preloaded[step.id] = (step, run)


def lease_deadline(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def relax_commit(*, session: Session) -> None:
    """This transaction's commit returns before its WAL is flushed to disk (for it alone).

    Only for writes whose loss in a database crash is harmless because the message that made
    them is not acked yet, or is published again: a claim (the redelivery claims again) and an
    outbox row's `published_at` (the relay publishes it again; the runner drops duplicates).
    Other sessions see the commit at once; a step's result always commits synchronously.
    """
    session.execute(text("SET LOCAL synchronous_commit = off"))

"""The reaper: no step stays `running` (or `queued` with its message lost) forever.

A running step whose lease expired lost its worker (SIGKILL, OOM, node gone) or its message;
it is queued again, or failed with a clear reason after too many deliveries. A queued step whose
dependencies finished long ago lost its message (e.g. Redis restarted empty); it is re-published.
Duplicates are harmless: the runner's claim lets one delivery through.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import StepRun
from agent33.engine import store
from agent33.engine.progress import fail_step, step_definition, workflow_of
from agent33.engine.states import RUN_TERMINAL, StepState


@dataclass
class ReapResult:
    redelivered: int = 0
    failed: int = 0
    outbox_ids: list[int] = field(default_factory=list)
    step_ids: list[uuid.UUID] = field(default_factory=list)


def _expired_running(now: dt.datetime) -> list[StepRun]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(StepRun).where(
                    StepRun.state == StepState.RUNNING.value, StepRun.lease_expires_at < now
                )
            )
        )


def _stale_queued(now: dt.datetime, age: float) -> list[StepRun]:
    cutoff = now - dt.timedelta(seconds=age)
    with session_scope() as session:
        return list(
            session.scalars(
                select(StepRun).where(
                    StepRun.state == StepState.QUEUED.value, StepRun.queued_at < cutoff
                )
            )
        )


def _waiting_parents() -> list[uuid.UUID]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(StepRun.id).where(
                    StepRun.state == StepState.RUNNING.value, StepRun.waiting_for == "children"
                )
            )
        )


def _join_parent(parent_id: uuid.UUID, result: ReapResult) -> None:
    """A lost chord body must not leave a parallel group open: the barrier is re-checked here."""
    from agent33.engine.segments import finalize_parent

    outcome = finalize_parent(str(parent_id))
    if outcome.status == "joined":
        result.redelivered += 1
        result.outbox_ids.extend(outcome.outbox_ids)


def reap(settings: Settings, *, now: dt.datetime | None = None) -> ReapResult:
    now = now or utcnow()
    result = ReapResult()
    for candidate in _expired_running(now):
        _reap_running(candidate, settings, now, result)
    for parent_id in _waiting_parents():
        _join_parent(parent_id, result)
    reaped = set(result.step_ids)
    for candidate in _stale_queued(now, settings.step_lease_seconds):
        if candidate.id not in reaped:
            _republish_queued(candidate, settings, now, result)
    return result


def _reap_running(
    candidate: StepRun, settings: Settings, now: dt.datetime, result: ReapResult
) -> None:
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=candidate.id)
        if loaded is None:
            return
        step, run = loaded
        lease = step.lease_expires_at
        if step.state != StepState.RUNNING or lease is None or lease >= now:
            return
        workflow = workflow_of(session, run)
        definition = step_definition(session, workflow, step)
        if step.deliveries >= settings.max_deliveries + definition.retries.max:
            message = f"lease expired after {step.deliveries} deliveries; worker {step.worker} lost"
            outcome = fail_step(
                session=session,
                run=run,
                workflow=workflow,
                step=step,
                error={"type": "WorkerLost", "message": message},
            )
            result.outbox_ids.extend(outcome.outbox_ids)
            result.failed += 1
            return
        store.set_step_state(
            session=session,
            step=step,
            target=StepState.QUEUED,
            message=f"lease expired (worker {step.worker}); redelivering",
        )
        result.outbox_ids.append(
            store.enqueue_step(session=session, step=step, definition=definition)
        )
        result.redelivered += 1
        result.step_ids.append(step.id)


def _republish_queued(
    candidate: StepRun, settings: Settings, now: dt.datetime, result: ReapResult
) -> None:
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=candidate.id)
        if loaded is None:
            return
        step, run = loaded
        if step.state != StepState.QUEUED or run.state in RUN_TERMINAL:
            return
        workflow = workflow_of(session, run)
        if not store.deps_done(session=session, step=step, workflow=workflow):
            return
        finished = session.scalars(
            select(StepRun.finished_at).where(
                StepRun.run_id == run.id,
                StepRun.parent_id.is_(None),
                StepRun.step_id.in_(step.depends_on),
                StepRun.finished_at.is_not(None),
            )
        )
        last_ready = max([*finished, step.queued_at or now])
        if (now - last_ready).total_seconds() < settings.step_lease_seconds:
            return
        store.add_event(
            session=session,
            run_id=run.id,
            step_id=step.step_id,
            kind="step.republished",
            message="queued too long with its dependencies done; message presumed lost",
        )
        step.queued_at = now
        definition = step_definition(session, workflow, step)
        result.outbox_ids.append(
            store.enqueue_step(session=session, step=step, definition=definition)
        )
        result.redelivered += 1

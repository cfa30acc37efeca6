"""The reaper: no step stays `running` (or `queued` with its message lost) forever.

A running step's lease is renewed by its worker's heartbeat while the action runs, so a lease
that expired means the worker stopped (SIGKILL, OOM, node gone, cut off from the database); the
step is queued again, or failed with a clear reason once its delivery budget is spent. A queued
step whose dependencies finished long ago lost its message (e.g. Redis restarted empty); it is
re-published, each time counted, waiting twice as long as before each time, and failed once the
same budget is spent (a message no worker ever takes must not be republished forever).
Duplicates are harmless: the runner's claim lets one delivery through.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.automation import dead_letters
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Run, RunEvent, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.engine import admission, lease, readiness, store
from agent33.engine.actions import is_repeat_safe
from agent33.engine.completion import fail_step
from agent33.engine.segments import finalize_parent
from agent33.engine.states import RUN_TERMINAL, StepState
from agent33.engine.workflows import step_definition, workflow_of
from agent33.observability import metrics

log = structlog.get_logger(__name__)


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
    outcome = finalize_parent(str(parent_id))
    if outcome.status == "joined":
        result.redelivered += 1
        result.outbox_ids.extend(outcome.outbox_ids)


def reap(settings: Settings, *, now: dt.datetime | None = None) -> ReapResult:
    now = now or utcnow()
    result = ReapResult()
    for candidate in _expired_running(now):
        _guarded(_reap_running, candidate, settings, now, result)
    for parent_id in _waiting_parents():
        _guarded(_join_parent, parent_id, result)
    reaped = set(result.step_ids)
    for candidate in _stale_queued(now, settings.step_lease_seconds):
        if candidate.id not in reaped:
            _guarded(_republish_queued, candidate, settings, now, result)
    _guarded(_admit_stranded, result)
    return result


def _admit_stranded(result: ReapResult) -> None:
    """Queued runs of a concurrency key with a free slot start (see `admission`)."""
    with session_scope() as session:
        result.outbox_ids.extend(admission.admit_stranded(session=session))


def _guarded(func: Callable[..., None], *args: object) -> None:
    """One step the reaper cannot handle must not keep it from the others."""
    try:
        func(*args)
    except Exception:  # noqa: BLE001 - logged; the next pass tries again
        log.exception("reaper.step_failed", target=str(getattr(args[0], "id", args[0])))


def _when(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "never"


def _give_up(
    session: Session,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    kind: str,
    message: str,
    result: ReapResult,
) -> None:
    """Fail a step whose delivery budget is spent (not retryable: the budget already was), and
    keep it as a dead letter (replaying it resumes the run)."""
    dead_letters.record(
        session=session,
        kind=dead_letters.STEP,
        ref=str(step.id),
        run_id=run.id,
        payload={
            "run_id": str(run.id),
            "step_id": step.step_id,
            "step_run_id": str(step.id),
            "queue": step.queue,
            "workflow": run.workflow_name,
            "reason": kind,
        },
        attempts=max(step.deliveries, step.republishes),
        last_error=message,
    )
    outcome = fail_step(
        session=session,
        run=run,
        workflow=workflow,
        step=step,
        error={"type": kind, "retryable": False, "message": message},
    )
    result.outbox_ids.extend(outcome.outbox_ids)
    result.failed += 1
    metrics.after_commit(session.info, metrics.step_reaped, "failed")


def _reap_running(
    candidate: StepRun, settings: Settings, now: dt.datetime, result: ReapResult
) -> None:
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=candidate.id)
        if loaded is None:
            return
        step, run = loaded
        if step.state != StepState.RUNNING:
            return
        session.refresh(step, with_for_update=True)  # a heartbeat in flight is waited out
        expires = step.lease_expires_at
        if step.state != StepState.RUNNING or expires is None or expires >= now:
            return
        workflow = workflow_of(session, run)
        definition = step_definition(session, workflow, step)
        budget = lease.delivery_budget(settings, definition)
        seen = (
            f"lease expired at {_when(expires)}, last heartbeat {_when(step.heartbeat_at)}, "
            f"worker {step.worker or 'unknown'} ({lease.liveness(step.worker, step.id)})"
        )
        if not is_repeat_safe(definition.action) and lease.liveness(step.worker, step.id) != "dead":
            message = (
                f"{seen}; {definition.action} is not safe to repeat and that worker may have run "
                "it, so it is not run again (resume the run to run it again)"
            )
            _give_up(session, run, workflow, step, "PossiblyExecuted", message, result)
            return
        if lease.deliveries_exhausted(step.deliveries, settings, definition):
            message = f"{seen}; delivery budget spent ({step.deliveries} of {budget}): worker lost"
            _give_up(session, run, workflow, step, "WorkerLost", message, result)
            return
        store.set_step_state(
            session=session,
            step=step,
            target=StepState.QUEUED,
            message=f"{seen}; redelivering (delivery {step.deliveries + 1} of {budget})",
        )
        result.outbox_ids.append(
            store.enqueue_step(session=session, step=step, definition=definition)
        )
        result.redelivered += 1
        result.step_ids.append(step.id)
        metrics.after_commit(session.info, metrics.step_reaped, "redelivered")


def _due_at(session: Session, step: StepRun) -> dt.datetime | None:
    """When a queued step's message is due: a retry is published with a countdown (recorded on
    its `retrying` event, in the transaction that queued it), not to be taken for lost before."""
    if step.queued_at is None or step.attempt == 0:
        return step.queued_at
    window = dt.timedelta(seconds=5)
    data = session.scalar(
        select(RunEvent.data)
        .where(
            RunEvent.run_id == step.run_id,
            RunEvent.step_id == step.step_id,
            RunEvent.to_state == StepState.RETRYING.value,
            RunEvent.created_at.between(step.queued_at - window, step.queued_at + window),
        )
        .order_by(RunEvent.id.desc())
        .limit(1)
    )
    delay = data.get("delay") if isinstance(data, dict) else None
    if not isinstance(delay, int | float) or delay <= 0:
        return step.queued_at
    return step.queued_at + dt.timedelta(seconds=float(delay))


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
        if not readiness.deps_done(session=session, step=step, workflow=workflow):
            return
        finished = session.scalars(
            select(StepRun.finished_at).where(
                StepRun.run_id == run.id,
                StepRun.parent_id.is_(None),
                StepRun.step_id.in_(step.depends_on),
                StepRun.finished_at.is_not(None),
            )
        )
        last_ready = max([*finished, _due_at(session, step) or now])
        patience = settings.step_lease_seconds * 2 ** min(step.republishes, 16)
        if (now - last_ready).total_seconds() < patience:
            return
        definition = step_definition(session, workflow, step)
        budget = lease.delivery_budget(settings, definition)
        waited = f"ready since {_when(last_ready)} with its dependencies done"
        if lease.deliveries_exhausted(step.republishes, settings, definition):
            message = (
                f"{waited}; republished {step.republishes} times (budget {budget}) and never "
                "taken by a worker: no worker consumes its queue, or its message keeps being lost"
            )
            _give_up(session, run, workflow, step, "MessageLost", message, result)
            return
        step.republishes += 1
        store.add_event(
            session=session,
            run_id=run.id,
            step_id=step.step_id,
            kind="step.republished",
            message=f"{waited}; message presumed lost, republishing "
            f"(republish {step.republishes} of {budget})",
            data={"republishes": step.republishes, "queue": step.queue},
        )
        step.queued_at = now
        result.outbox_ids.append(
            store.enqueue_step(session=session, step=step, definition=definition)
        )
        result.redelivered += 1
        metrics.after_commit(session.info, metrics.step_reaped, "republished")

"""Execute one delivery of one step: claim, run the action, record, dispatch what became ready.

Transactions: (1) claim: the step is locked, checked and moved to `running` with a lease, and the
attempt is counted, committed before any work; (2) the action runs outside any transaction;
(3) the result, the next ready segments (outbox) and the run's completion commit together under
the run row lock. The Celery task acks only after (3), so a lost worker means redelivery, and a
duplicate delivery finds the step already claimed or finished and exits quietly.
"""

from __future__ import annotations

import os
import random
import socket
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.registry import definition_of, get_workflow
from agent33.engine import store
from agent33.engine.actions import ActionContext, get_action
from agent33.engine.context import run_context
from agent33.engine.expressions import evaluate, render
from agent33.engine.states import RUN_TERMINAL, STEP_TERMINAL, RunState, StepState
from agent33.errors import Agent33Error

log = structlog.get_logger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Outcome:
    """What the task does next: publish these outbox rows; `status` is for logs and tests."""

    status: str
    outbox_ids: list[int] = field(default_factory=list)


@dataclass
class Claim:
    step_run_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int
    params: dict[str, Any]
    inputs: dict[str, Any]
    action: str


def _workflow(session: Session, run: Run) -> WorkflowDef:
    return definition_of(
        get_workflow(session=session, name=run.workflow_name, version=run.workflow_version)
    )


def _owner_alive(worker: str | None) -> bool:
    """Whether the worker recorded on a running step still exists (known only on this host)."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    return pid.isdigit() and int(pid) != os.getpid() and psutil.pid_exists(int(pid))


def _load(session: Session, step_run_id: uuid.UUID) -> tuple[StepRun, Run] | None:
    step = session.scalar(select(StepRun).where(StepRun.id == step_run_id))
    if step is None:
        return None
    return step, store.lock_run(session=session, run_id=step.run_id)


def claim(step_run_id: uuid.UUID, settings: Settings, task_id: str | None) -> Claim | Outcome:
    with session_scope() as session:
        loaded = _load(session, step_run_id)
        if loaded is None:
            return Outcome("missing")
        step, run = loaded
        if step.state in STEP_TERMINAL:
            return Outcome(f"duplicate:{step.state}")
        if run.state in RUN_TERMINAL:
            store.set_step_state(
                session=session,
                step=step,
                target=StepState.CANCELLED,
                message=f"run is {run.state}",
            )
            return Outcome("cancelled")
        if step.state == StepState.PENDING:
            return Outcome("not-queued")
        if step.state == StepState.RUNNING and _owner_alive(step.worker):
            lease = step.lease_expires_at
            if lease is not None and lease > utcnow():
                return Outcome("duplicate:running")
        workflow = _workflow(session, run)
        definition = workflow.step(step.step_id)
        if not store.deps_done(step, run) and not _tolerated(workflow, run, step):
            return Outcome("waiting-for-dependencies")
        step.deliveries += 1
        if step.deliveries > settings.max_deliveries + definition.retries.max:
            step.error = {
                "type": "WorkerLost",
                "message": (
                    f"step delivered {step.deliveries - 1} times without finishing (worker lost)"
                ),
            }
            store.set_step_state(
                session=session, step=step, target=StepState.FAILED, message=step.error["message"]
            )
            return Outcome("failed", _after_terminal(session, run, workflow))
        return _start(session, settings, run, step, definition, task_id)


def _tolerated(workflow: WorkflowDef, run: Run, step: StepRun) -> bool:
    states = {s.step_id: s.state for s in run.steps}
    return all(
        states[d] in (StepState.SUCCEEDED, StepState.SKIPPED)
        or (states[d] == StepState.FAILED and workflow.step(d).on_error == "continue")
        for d in step.depends_on
    )


def _start(
    session: Session,
    settings: Settings,
    run: Run,
    step: StepRun,
    definition: StepDef,
    task_id: str | None,
) -> Claim | Outcome:
    context = run_context(run)
    if run.state == RunState.PENDING:
        store.set_run_state(session=session, run=run, target=RunState.RUNNING)
    step.attempt += 1
    step.worker = WORKER_ID
    step.task_id = task_id
    lease = (definition.timeout or 0) + settings.step_lease_seconds
    step.lease_expires_at = store.lease_deadline(lease)
    store.set_step_state(
        session=session,
        step=step,
        target=StepState.RUNNING,
        data={"attempt": step.attempt, "worker": WORKER_ID},
    )
    try:
        if definition.when and not evaluate(definition.when, context, step_id=step.step_id):
            store.set_step_state(
                session=session,
                step=step,
                target=StepState.SKIPPED,
                message=f"when: {definition.when!r} is false",
            )
            return Outcome("skipped", _after_terminal(session, run, _workflow(session, run)))
        params = render(definition.params, context, step_id=step.step_id)
    except Agent33Error as exc:
        _record_failure(session, run, step, exc)
        return Outcome("failed", _after_terminal(session, run, _workflow(session, run)))
    step.inputs = params
    return Claim(step.id, run.id, step.step_id, step.attempt, params, dict(run.inputs), step.action)


def execute(claimed: Claim) -> tuple[bool, Any]:
    """Run the action; (True, output) or (False, error dict). Never raises for action errors."""
    try:
        action = get_action(claimed.action)
        context = ActionContext(
            run_id=str(claimed.run_id),
            step_id=claimed.step_id,
            attempt=claimed.attempt,
            params=claimed.params,
            inputs=claimed.inputs,
        )
        return True, action(context)
    except Exception as exc:  # noqa: BLE001 - every action failure is recorded on the step
        return False, _error_dict(exc)


def _error_dict(exc: BaseException) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if isinstance(exc, Agent33Error):
        error["code"] = exc.code
    else:
        error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    return error


def _record_failure(session: Session, run: Run, step: StepRun, exc: BaseException) -> None:
    step.error = _error_dict(exc)
    store.set_step_state(
        session=session, step=step, target=StepState.FAILED, message=step.error["message"]
    )


def record(claimed: Claim, ok: bool, result: Any) -> Outcome:
    """Commit the outcome of an attempt; retries are scheduled through the outbox with a delay."""
    with session_scope() as session:
        loaded = _load(session, claimed.step_run_id)
        if loaded is None:
            return Outcome("missing")
        step, run = loaded
        if step.state != StepState.RUNNING or step.attempt != claimed.attempt:
            return Outcome(f"stale:{step.state}")
        workflow = _workflow(session, run)
        if ok:
            step.output = result
            step.error = None
            store.set_step_state(session=session, step=step, target=StepState.SUCCEEDED)
            return Outcome("succeeded", _after_terminal(session, run, workflow))
        definition = workflow.step(step.step_id)
        step.error = result
        if step.attempt <= definition.retries.max:
            return _schedule_retry(session, run, step, definition)
        store.set_step_state(
            session=session, step=step, target=StepState.FAILED, message=result["message"]
        )
        return Outcome("failed", _after_terminal(session, run, workflow))


def _schedule_retry(session: Session, run: Run, step: StepRun, definition: StepDef) -> Outcome:
    policy = definition.retries
    delay = min(policy.max_delay, policy.backoff ** (step.attempt - 1))
    delay = delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
    store.set_step_state(
        session=session,
        step=step,
        target=StepState.RETRYING,
        message=f"retry {step.attempt}/{policy.max} in {delay:.1f}s",
        data={"delay": delay},
    )
    store.set_step_state(session=session, step=step, target=StepState.QUEUED)
    from agent33.engine import planner

    payload = {"segments": [[planner.entry(step, definition)]], "countdown": delay}
    return Outcome("retrying", [store.enqueue(session=session, run_id=run.id, payload=payload)])


def _after_terminal(session: Session, run: Run, workflow: WorkflowDef) -> list[int]:
    """After a step ends: fail fast, or queue what became ready, then maybe close the run."""
    failed = [
        s
        for s in run.steps
        if s.state == StepState.FAILED and workflow.step(s.step_id).on_error != "continue"
    ]
    if failed:
        store.cancel_unfinished(
            session=session, run=run, reason=f"step {failed[0].step_id!r} failed"
        )
        store.finish_if_done(session=session, run=run, workflow=workflow)
        return []
    outbox_ids = store.dispatch_ready(session=session, run=run, workflow=workflow)
    store.finish_if_done(session=session, run=run, workflow=workflow)
    return outbox_ids


def run_step(step_run_id: str, settings: Settings, task_id: str | None = None) -> Outcome:
    """One delivery, end to end (the task body)."""
    try:
        ident = uuid.UUID(step_run_id)
    except ValueError:
        return Outcome("invalid-id")
    claimed = claim(ident, settings, task_id)
    if isinstance(claimed, Outcome):
        return claimed
    log.info(
        "step.started", run_id=str(claimed.run_id), step_id=claimed.step_id, attempt=claimed.attempt
    )
    ok, result = execute(claimed)
    outcome = record(claimed, ok, result)
    log.info(
        "step.finished", run_id=str(claimed.run_id), step_id=claimed.step_id, status=outcome.status
    )
    return outcome

"""Execute one delivery of one step: claim, run the action, record, dispatch what became ready.

Transactions: (1) claim: the step is locked, checked and moved to `running` with a lease, and the
attempt is counted, committed before any work; (2) the action runs outside any transaction;
(3) the result, the next ready segments (outbox) and the run's completion commit together under
the run row lock. The Celery task acks only after (3), so a lost worker means redelivery, and a
duplicate delivery finds the step already claimed or finished and exits quietly. While (2) runs a
heartbeat renews the step's lease, so only a dead worker's step is ever taken back.

Anything unexpected raised while claiming (an expression, a context, a row that does not store)
or recording ends the step failed with the error recorded, in a transaction of its own: a step
is never left queued to be republished forever. Database outages still propagate (the task
retries the delivery).
"""

from __future__ import annotations

import contextvars
import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.engine import budget_pause, children, lease, readiness, store
from agent33.engine.action_requests import Special
from agent33.engine.actions import ActionContext, get_action, is_inline, is_repeat_safe
from agent33.engine.call_scope import step_calls
from agent33.engine.completion import fail_step, finish_step
from agent33.engine.context import referenced_steps, run_context
from agent33.engine.errors import error_dict
from agent33.engine.expressions import evaluate, render
from agent33.engine.failures import OUTAGES, expression_error, fail_unexpected
from agent33.engine.outcome import Outcome
from agent33.engine.request_handlers import record_request
from agent33.engine.states import RUN_TERMINAL, STEP_TERMINAL, RunState, StepState
from agent33.engine.workflows import step_definition, workflow_of
from agent33.observability import logging as logs
from agent33.observability import metrics, tracing
from agent33.security import audit
from agent33.security.vault import mask, secret_context

log = structlog.get_logger(__name__)


RAW_PARAMS = {"parallel_group": ("step", "branches")}


@dataclass
class Claim:
    step_run_id: uuid.UUID
    run_id: uuid.UUID
    step_id: str
    attempt: int
    params: dict[str, Any]
    inputs: dict[str, Any]
    action: str
    timeout: float | None
    context: dict[str, Any]
    previous_output: Any
    rows: tuple[StepRun, Run] | None = field(default=None, repr=False)  # same-session use only


def claim(step_run_id: uuid.UUID, settings: Settings, task_id: str | None) -> Claim | Outcome:
    with session_scope() as session:
        return _claim(session, step_run_id, settings, task_id)


def _claim(
    session: Session, step_run_id: uuid.UUID, settings: Settings, task_id: str | None
) -> Claim | Outcome:
    loaded = store.lock_step(session=session, step_run_id=step_run_id)
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
    if step.waiting_for:
        return Outcome(f"waiting:{step.waiting_for}")
    if step.state == StepState.PENDING:
        return Outcome("not-queued")
    if lease.held_elsewhere(step):
        return Outcome("duplicate:running")
    workflow = workflow_of(session, run)
    if not readiness.deps_done(session=session, step=step, workflow=workflow):
        store.set_step_state(
            session=session,
            step=step,
            target=StepState.PENDING,
            message="dependencies not done yet; back to pending",
        )
        return Outcome("waiting-for-dependencies")
    definition = step_definition(session, workflow, step)
    if (
        step.state == StepState.RUNNING
        and not is_repeat_safe(definition.action)
        and lease.liveness(step.worker, step.id) != "dead"
    ):
        return Outcome("duplicate:running")  # maybe ran: the reaper fails it, never runs it twice
    if lease.deliveries_exhausted(step.deliveries, settings, definition):
        message = (
            f"step delivered {step.deliveries} times without finishing "
            f"(budget {lease.delivery_budget(settings, definition)}); not delivering it again"
        )
        metrics.after_commit(session.info, metrics.record_dead_letter, "step")
        return fail_step(
            session=session,
            run=run,
            workflow=workflow,
            step=step,
            error={"type": "WorkerLost", "retryable": False, "message": message},
        )
    step.deliveries += 1
    return _start(session, settings, run, workflow, step, definition, task_id)


def _context(
    session: Session, run: Run, step: StepRun, definition: StepDef, settings: Settings
) -> dict[str, Any]:
    """Only what the step's expressions name is read; `secrets` decrypts lazily, on access."""
    context = run_context(session, run, referenced_steps(definition.params, definition.when))
    context["secrets"] = secret_context(session, settings, definition.params, definition.when)
    if step.parent_id is not None:
        item, key = children.item_of(step)
        context.update(item=item, key=key, index=(step.inputs or {}).get("index"))
    return context


def _start(
    session: Session,
    settings: Settings,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    definition: StepDef,
    task_id: str | None,
) -> Claim | Outcome:
    logs.bind(run_id=str(run.id), step_id=step.step_id)
    context = _context(session, run, step, definition, settings)
    if run.state == RunState.PENDING:
        store.set_run_state(session=session, run=run, target=RunState.RUNNING)
    step.attempt += 1
    step.worker = lease.worker_id()
    step.task_id = task_id
    step.heartbeat_at = utcnow()
    step.lease_expires_at = store.lease_deadline(
        (definition.timeout or 0) + settings.step_lease_seconds
    )
    store.set_step_state(
        session=session,
        step=step,
        target=StepState.RUNNING,
        data={"attempt": step.attempt, "worker": step.worker},
    )
    try:
        when = definition.when
        skip = bool(when and not evaluate(when, context, step_id=step.step_id))
        raw = RAW_PARAMS.get(definition.action, ())
        params = {
            k: (v if k in raw else render(v, context, step_id=step.step_id))
            for k, v in ({} if skip else definition.params).items()
        }
    except SQLAlchemyError:
        raise  # the database (e.g. read by a lazy secret), not the expression
    except Exception as exc:  # noqa: BLE001 - any expression failure fails the step, for good
        resolved = getattr(context.get("secrets"), "resolved", {})
        return fail_step(
            session=session,
            run=run,
            workflow=workflow,
            step=step,
            error=mask(expression_error(exc, step.step_id), resolved.values()),  # may quote one
        )
    if skip:
        return finish_step(
            session=session,
            run=run,
            workflow=workflow,
            step=step,
            target=StepState.SKIPPED,
            message=f"when: {definition.when!r} is false",
        )
    # The action gets the plaintext; the stored inputs never do (outputs are the action's duty).
    resolved_secrets = context["secrets"].resolved
    stored = mask(params, resolved_secrets.values())
    if resolved_secrets:
        audit.record(
            session=session,
            action="secrets.read",
            outcome="ok",
            principal=f"run:{run.id}",
            target=",".join(sorted(resolved_secrets)),
            details={"step_id": step.step_id},
        )
    if step.parent_id is not None:
        step.inputs = {**(step.inputs or {}), "with": stored}
    else:
        step.inputs = stored
    return Claim(
        step.id,
        run.id,
        step.step_id,
        step.attempt,
        params,
        dict(run.inputs),
        definition.action,
        definition.timeout,
        context,
        step.output,
        (step, run),
    )


_timeout_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="agent33-step")


def execute(claimed: Claim, settings: Settings) -> tuple[bool, Any]:
    """Run the action (bounded by the step timeout) in a span of its own; (True, output) or
    (False, error dict)."""
    attributes = {
        "agent33.run_id": str(claimed.run_id),
        "agent33.step_id": claimed.step_id,
        "agent33.action": claimed.action,
        "agent33.attempt": claimed.attempt,
    }
    started = time.perf_counter()
    with tracing.span(f"step {claimed.step_id}", attributes) as current:
        ok, result = _execute(claimed, settings)
        if current is not None and not ok:
            current.set_attribute("agent33.error", str(result.get("message", ""))[:500])
    log.debug(
        "step.executed",
        action=claimed.action,
        attempt=claimed.attempt,
        ok=ok,
        seconds=round(time.perf_counter() - started, 6),
    )
    return ok, result


def _execute(claimed: Claim, settings: Settings) -> tuple[bool, Any]:
    try:
        action = get_action(claimed.action)
        context = ActionContext(
            run_id=str(claimed.run_id),
            step_id=claimed.step_id,
            attempt=claimed.attempt,
            params=claimed.params,
            inputs=claimed.inputs,
            settings=settings,
            context=claimed.context,
            previous_output=claimed.previous_output,
        )
        if claimed.timeout is None:
            return _checked(action(context))
        # The action's thread continues this one's context: its spans and log fields.
        future = _timeout_pool.submit(contextvars.copy_context().run, action, context)
        try:
            return _checked(future.result(timeout=claimed.timeout))
        except FutureTimeout:
            future.cancel()
            context.stop.set()
            return False, {
                "type": "StepTimeout",
                "retryable": True,
                "message": f"step timed out after {claimed.timeout:g}s",
            }
    except Exception as exc:  # noqa: BLE001 - every action failure is recorded on the step
        return False, error_dict(exc)


def _checked(output: Any) -> tuple[bool, Any]:
    """Outputs are stored as JSON: refuse anything else here, with a message, not at commit."""
    if isinstance(output, Special):
        return True, output
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return False, {
            "type": "InvalidOutput",
            "retryable": False,
            "message": f"step output is not JSON-serialisable: {exc}",
        }
    return True, output


def record(claimed: Claim, ok: bool, result: Any, settings: Settings) -> Outcome:
    """Commit the outcome of an attempt; retries are scheduled through the outbox with a delay.
    An outcome that cannot be stored fails the step rather than leave it to the reaper."""
    try:
        return _record_claimed(claimed, ok, result, settings)
    except OUTAGES:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the step instead
        return fail_unexpected(claimed.step_run_id, exc, stage="record", attempt=claimed.attempt)


def _record_claimed(claimed: Claim, ok: bool, result: Any, settings: Settings) -> Outcome:
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=claimed.step_run_id)
        if loaded is None:
            return Outcome("missing")
        step, run = loaded
        if step.state != StepState.RUNNING or step.attempt != claimed.attempt:
            return Outcome(f"stale:{step.state}")
        return _record(session, settings, run, step, ok, result)


def _record(
    session: Session, settings: Settings, run: Run, step: StepRun, ok: bool, result: Any
) -> Outcome:
    workflow = workflow_of(session, run)
    definition = step_definition(session, workflow, step)
    if ok and isinstance(result, Special):
        return record_request(session, settings, run, workflow, step, definition, result)
    if ok:
        step.output = result
        step.error = None
        _record_screening(session, run, step, result)
        return finish_step(
            session=session, run=run, workflow=workflow, step=step, target=StepState.SUCCEEDED
        )
    if budget_pause.parks(result):
        return budget_pause.park(session, run, step, result)
    step.error = result
    if step.attempt <= definition.retries.max and definition.retries.allows(result):
        return schedule_retry(session, settings, step, definition)
    return fail_step(session=session, run=run, workflow=workflow, step=step, error=result)


def schedule_retry(
    session: Session, settings: Settings, step: StepRun, definition: StepDef
) -> Outcome:
    policy = definition.retries
    ceiling = min(policy.max_delay, settings.visibility_timeout / 2)
    delay = min(ceiling, policy.backoff ** (step.attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
    store.set_step_state(
        session=session,
        step=step,
        target=StepState.RETRYING,
        message=f"retry {step.attempt}/{policy.max} in {delay:.1f}s: {step.error}",
        data={"delay": delay, "attempt": step.attempt, "type": (step.error or {}).get("type")},
    )
    store.set_step_state(session=session, step=step, target=StepState.QUEUED)
    return Outcome(
        "retrying",
        [store.enqueue_step(session=session, step=step, definition=definition, countdown=delay)],
    )


def _record_screening(session: Session, run: Run, step: StepRun, output: Any) -> None:
    """Prompt-injection findings of an agent turn become run events (they explain the run)."""
    findings = output.get("screening") if isinstance(output, dict) else None
    for finding in findings or []:
        if isinstance(finding, dict) and finding.get("hits"):
            store.add_event(
                session=session,
                run_id=run.id,
                step_id=step.step_id,
                kind="security.injection",
                message=str(finding.get("source", "")),
                data=finding,
            )


class NotInline(Exception):  # noqa: N818 - a signal to the batch runner, not an error
    """The step needs its own delivery (an action with side effects, or a timeout)."""


def run_inline(
    session: Session, step_run_id: uuid.UUID, settings: Settings, task_id: str | None
) -> Outcome:
    """Claim, run and record one inline step in the caller's transaction (a batch of them
    commits once). Raises NotInline, after which the caller rolls back what this did."""
    claimed = _claim(session, step_run_id, settings, task_id)
    if isinstance(claimed, Outcome):
        return claimed
    if not is_inline(claimed.action) or claimed.timeout is not None:
        raise NotInline(claimed.action)
    ok, result = execute(claimed, settings)
    assert claimed.rows is not None
    step, run = claimed.rows
    return _record(session, settings, run, step, ok, result)


def run_step(step_run_id: str, settings: Settings, task_id: str | None = None) -> Outcome:
    """One delivery, end to end (the task body)."""
    try:
        ident = uuid.UUID(step_run_id)
    except ValueError:
        return Outcome("invalid-id")
    try:
        with session_scope() as session:
            claimed = _claim(session, ident, settings, task_id)
            if isinstance(claimed, Outcome):
                return claimed
            if is_inline(claimed.action) and claimed.timeout is None:
                # No side effects outside this database: run it inside the claiming transaction
                # (a crash rolls everything back and the redelivery simply runs it again).
                ok, result = execute(claimed, settings)
                assert claimed.rows is not None
                step, run = claimed.rows
                return _record(session, settings, run, step, ok, result)
            store.relax_commit(session=session)  # the result commits synchronously, below
    except OUTAGES:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the step: never parked in `queued`
        return fail_unexpected(ident, exc, stage="start")
    with (
        lease.heartbeat(claimed.step_run_id, claimed.attempt, settings),
        step_calls(settings, claimed.run_id, claimed.step_id, claimed.attempt),
    ):
        ok, result = execute(claimed, settings)
    return record(claimed, ok, result, settings)

"""Operator actions on a run: cancel, resume from checkpoints, approve a waiting step.

Each runs under the run row lock, takes `session=` and never commits; the caller publishes the
returned outbox ids (and revokes the returned task ids) after its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.engine import admission, readiness, store
from agent33.engine.completion import after_terminal, cancel_unfinished
from agent33.engine.states import RUN_TERMINAL, RunState, StepState
from agent33.engine.workflows import step_definition, workflow_of
from agent33.errors import Conflict, NotFound


@dataclass
class ControlResult:
    """What to do after the commit: publish `outbox_ids`, revoke `revoke_task_ids`."""

    state: str
    outbox_ids: list[int] = field(default_factory=list)
    revoke_task_ids: list[str] = field(default_factory=list)


def cancel_run(*, session: Session, run_id: uuid.UUID, by: str | None = None) -> ControlResult:
    """Cancel a run that is not finished: unfinished steps become `cancelled`.

    Running steps' Celery task ids are returned so the caller revokes (terminates) them; queued
    messages are dropped by the runner when they arrive (their step is already cancelled).
    Raises NotFound, or Conflict when the run already finished.
    """
    run = store.lock_run(session=session, run_id=run_id)
    if run.state in RUN_TERMINAL:
        raise Conflict(f"run {run_id} is already {run.state}", fields={"state": [run.state]})
    running = [
        s.task_id
        for s in run.steps
        if s.state == StepState.RUNNING and s.task_id and not s.waiting_for
    ]
    reason = f"cancelled by {by}" if by else "cancelled"
    cancel_unfinished(session=session, run=run, reason=reason)
    store.set_run_state(session=session, run=run, target=RunState.CANCELLED, message=reason)
    return ControlResult(state=run.state, revoke_task_ids=running)


def resume_run(*, session: Session, run_id: uuid.UUID, by: str | None = None) -> ControlResult:
    """Re-plan a failed or cancelled run from its checkpoints: only what did not succeed runs.
    A run whose concurrency key is at its limit goes back to `queued` until admitted.

    Raises NotFound, or Conflict when the run is not failed/cancelled.
    """
    run = store.lock_run(session=session, run_id=run_id)
    if run.state not in (RunState.FAILED, RunState.CANCELLED):
        raise Conflict(
            f"only failed or cancelled runs resume; run {run_id} is {run.state}",
            fields={"state": [run.state]},
        )
    failed_parents = {s.id for s in run.steps if s.state in (StepState.FAILED, StepState.CANCELLED)}
    for step in list(run.steps):
        if step.parent_id in failed_parents and step.state != StepState.SUCCEEDED:
            run.steps.remove(step)  # re-spawned by the parent; succeeded children are kept
    session.flush()
    for step in run.steps:
        if step.state in (StepState.FAILED, StepState.CANCELLED):
            store.set_step_state(
                session=session,
                step=step,
                target=StepState.PENDING,
                message=f"resumed by {by}" if by else "resumed",
            )
            step.error = None
            step.output = None  # a rejected approval asks again; a wait starts over
            step.deliveries = 0
            step.waiting_for = None
            step.lease_expires_at = None
            step.finished_at = None
    run.error = None
    run.finished_at = None
    message = f"resumed by {by}" if by else "resumed"
    if run.concurrency_key is not None and not admission.may_start(
        session=session,
        workflow_name=run.workflow_name,
        key=run.concurrency_key,
        limit=run.concurrency_limit or 1,
    ):  # its key is at its limit: it waits its turn like a new run
        store.set_run_state(session=session, run=run, target=RunState.QUEUED, message=message)
        return ControlResult(state=run.state)
    store.set_run_state(session=session, run=run, target=RunState.RUNNING, message=message)
    workflow = workflow_of(session, run)
    return ControlResult(
        state=run.state,
        outbox_ids=readiness.dispatch_ready(session=session, run=run, workflow=workflow),
    )


def approve_step(
    *,
    session: Session,
    run_id: uuid.UUID,
    step_id: str,
    approved: bool = True,
    comment: str | None = None,
    by: str | None = None,
) -> ControlResult:
    """Answer a `wait` step awaiting approval (also inside parallel branches and maps).

    approved=True: the step succeeds with output {approved, by, comment}; False: it fails
    ("rejected by <by>: <comment>"). Raises NotFound (no such step), or Conflict when the step
    is not awaiting an approval.
    """
    run = store.lock_run(session=session, run_id=run_id)
    step: StepRun | None = next((s for s in run.steps if s.step_id == step_id), None)
    if step is None:
        raise NotFound(
            f"run {run_id} has no step {step_id!r}", fields={"step_id": ["no such step"]}
        )
    if step.state != StepState.RUNNING or step.waiting_for != "approval":
        raise Conflict(
            f"step {step_id!r} is not awaiting an approval (it is {step.state})",
            fields={"step_id": ["not awaiting an approval"]},
        )
    step.waiting_for = None
    decision = {"approved": approved, "by": by, "comment": comment}
    parked = step.output if isinstance(step.output, dict) else {}
    store.add_event(
        session=session,
        run_id=run.id,
        step_id=step_id,
        kind="step.approval",
        message=f"{'approved' if approved else 'rejected'} by {by}",
        data={**decision, **({"tool_call": parked["tool_call"]} if "tool_call" in parked else {})},
    )
    if "tool_call" in parked:
        return _continue_tool_call(session, run, step, {**parked, "decision": decision})
    step.output = decision
    if approved:
        store.set_step_state(session=session, step=step, target=StepState.SUCCEEDED)
    else:
        message = f"rejected by {by}" + (f": {comment}" if comment else "")
        step.error = {"type": "Rejected", "message": message, "retryable": False}
        store.set_step_state(session=session, step=step, target=StepState.FAILED, message=message)
    _leave_waiting(session, run)
    workflow = workflow_of(session, run)
    outbox = after_terminal(session=session, run=run, workflow=workflow, step=step)
    return ControlResult(state=run.state, outbox_ids=outbox)


def _continue_tool_call(
    session: Session, run: Run, step: StepRun, output: dict[str, Any]
) -> ControlResult:
    """An agent step parked on a proposed tool call runs again with the decision: approved,
    the tool runs; rejected, the model is told so; either way the conversation continues."""
    output["awaiting_approval"] = False
    step.output = output
    step.attempt -= 1  # the parked attempt goes on; the next claim counts it again
    step.deliveries = 0
    verdict = "approved" if output["decision"]["approved"] else "rejected"
    store.set_step_state(
        session=session,
        step=step,
        target=StepState.QUEUED,
        message=f"tool call {output['tool_call'].get('name')!r} {verdict}: the agent continues",
    )
    _leave_waiting(session, run)
    workflow = workflow_of(session, run)
    definition = step_definition(session, workflow, step)
    outbox_id = store.enqueue_step(session=session, step=step, definition=definition)
    return ControlResult(state=run.state, outbox_ids=[outbox_id])


def _leave_waiting(session: Session, run: Run) -> None:
    if run.state == RunState.WAITING and not any(s.waiting_for == "approval" for s in run.steps):
        store.set_run_state(session=session, run=run, target=RunState.RUNNING)

"""Carrying out what an action asked for instead of an output (`action_requests`): park for an
approval, defer a durable wait, fan out children, or start a sub-run."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.engine import children, service, store
from agent33.engine.action_requests import AwaitApproval, Defer, FanOut, Special, StartSubRun
from agent33.engine.completion import after_terminal, fail_step
from agent33.engine.errors import error_dict
from agent33.engine.outcome import Outcome
from agent33.engine.states import RunState, StepState
from agent33.errors import Agent33Error


def record_request(
    session: Session,
    settings: Settings,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    definition: StepDef,
    request: Special,
) -> Outcome:
    step.lease_expires_at = None
    if isinstance(request, AwaitApproval):
        output: dict[str, Any] = {"awaiting_approval": True, "prompt": request.prompt}
        if request.tool_call is not None:
            output.update(tool_call=request.tool_call, resume=request.resume)
        _park(
            session,
            step,
            "approval",
            output,
            f"awaiting approval: {request.prompt}",
            {"tool_call": request.tool_call} if request.tool_call is not None else None,
        )
        if run.state == RunState.RUNNING:
            store.set_run_state(
                session=session,
                run=run,
                target=RunState.WAITING,
                message=f"step {step.step_id!r} awaits approval",
            )
        return Outcome("waiting")
    if isinstance(request, Defer):
        step.output = {"wait_until": request.until.isoformat()}
        step.attempt -= 1
        step.deliveries = 0
        store.set_step_state(
            session=session,
            step=step,
            target=StepState.QUEUED,
            message=f"waiting until {request.until.isoformat()}",
        )
        delay = max(0.0, (request.until - utcnow()).total_seconds())
        countdown = min(delay, settings.visibility_timeout / 2)
        outbox_id = store.enqueue_step(
            session=session, step=step, definition=definition, countdown=countdown
        )
        return Outcome("deferred", [outbox_id])
    if isinstance(request, FanOut):
        outbox = children.spawn(
            session=session, run=run, parent=step, parent_def=definition, fan_out=request
        )
        if children.close_parent_if_done(session=session, run=run, parent=step, workflow=workflow):
            return Outcome(
                "succeeded", after_terminal(session=session, run=run, workflow=workflow, step=step)
            )
        return Outcome("fanned-out", outbox)
    return _start_sub_run(session, settings, run, workflow, step, request)


def _start_sub_run(
    session: Session,
    settings: Settings,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    request: StartSubRun,
) -> Outcome:
    try:
        with session.begin_nested():
            child, outbox, _ = service.start_run(
                session=session,
                settings=settings,
                workflow_name=request.workflow,
                inputs=request.inputs,
                version=request.version,
                created_by=f"run:{run.id}",
                parent_step_run_id=step.id,
                priority=run.priority,
            )
    except Agent33Error as exc:
        return fail_step(
            session=session,
            run=run,
            workflow=workflow,
            step=step,
            error=error_dict(exc),
            message=f"sub_workflow: {exc.message}",
        )
    output = {"run_id": str(child.id)}
    _park(session, step, "sub_run", output, f"sub-run {child.id} of {request.workflow}", output)
    return Outcome("sub-run", outbox)


def _park(
    session: Session,
    step: StepRun,
    waiting_for: str,
    output: dict[str, Any],
    message: str,
    data: dict[str, Any] | None = None,
) -> None:
    """The step stays `running` without a lease until what it waits for answers it."""
    step.waiting_for = waiting_for
    step.output = output
    store.add_event(
        session=session,
        run_id=step.run_id,
        step_id=step.step_id,
        kind="step.waiting",
        message=message,
        data=data,
    )

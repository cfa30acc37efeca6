"""Completion: what happens when a step ends (fallbacks, branch skipping, joins, the next ready
segments) and when its run ends (outputs, the parent step of a sub-run).

Always called inside the transaction that recorded the step's end, with the run row locked, so
concurrent finishers of one run are serialised and exactly one of them queues a join.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.engine import children, readiness, store
from agent33.engine.context import render_outputs
from agent33.engine.outcome import Outcome
from agent33.engine.states import RUN_TERMINAL, STEP_TERMINAL, RunState, StepState
from agent33.engine.workflows import workflow_of


def finish_step(
    *,
    session: Session,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    target: StepState,
    message: str | None = None,
) -> Outcome:
    """End `step` in `target` (succeeded, failed or skipped) and react to it; the outcome is
    named after the state and carries the outbox ids to publish after the commit."""
    store.set_step_state(session=session, step=step, target=target, message=message)
    return Outcome(
        target.value, after_terminal(session=session, run=run, workflow=workflow, step=step)
    )


def fail_step(
    *,
    session: Session,
    run: Run,
    workflow: WorkflowDef,
    step: StepRun,
    error: dict[str, Any],
    message: str | None = None,
) -> Outcome:
    """Record `error` on the step and end it failed (the event says `message`, by default the
    error's own)."""
    step.error = error
    return finish_step(
        session=session,
        run=run,
        workflow=workflow,
        step=step,
        target=StepState.FAILED,
        message=message if message is not None else error["message"],
    )


_PARENTS = "agent33.completion.parents"


@contextlib.contextmanager
def batched(session: Session) -> Iterator[list[int]]:
    """Several steps ending in one transaction: what each end sets off is decided once, at the
    end of the block: readiness (see `readiness.deferred`) and whether the parallel groups of
    the children that ended are complete (one read of a group's children per batch, not per
    child). The yielded list receives the outbox ids to publish after the commit."""
    parents: dict[uuid.UUID, tuple[Run, WorkflowDef]] = {}
    with readiness.deferred(session) as outbox_ids:
        session.info[_PARENTS] = parents
        try:
            yield outbox_ids
        finally:
            session.info.pop(_PARENTS, None)
        for parent_id, (run, workflow) in parents.items():
            parent = session.get(StepRun, parent_id)
            if parent is not None and children.close_parent_if_done(
                session=session, run=run, parent=parent, workflow=workflow
            ):
                outbox_ids.extend(
                    after_terminal(session=session, run=run, workflow=workflow, step=parent)
                )


def after_terminal(
    *, session: Session, run: Run, workflow: WorkflowDef, step: StepRun
) -> list[int]:
    """React to `step` having ended; returns outbox ids to publish after the commit."""
    noted = session.info.get(_PARENTS)
    if step.parent_id is not None and noted is not None:
        noted[step.parent_id] = (run, workflow)  # closed (or not) once, at the batch's end
        return []
    if step.parent_id is not None:
        parent = session.get(StepRun, step.parent_id)
        assert parent is not None
        if children.close_parent_if_done(
            session=session, run=run, parent=parent, workflow=workflow
        ):
            return after_terminal(session=session, run=run, workflow=workflow, step=parent)
        return []
    definition = workflow.step(step.step_id)
    if step.state == StepState.FAILED:
        if definition.fallback is not None:
            return _start_fallback(
                session=session, run=run, workflow=workflow, name=definition.fallback
            )
        if definition.on_error != "continue":
            cancel_unfinished(session=session, run=run, reason=f"step {step.step_id!r} failed")
            return finish_if_done(session=session, run=run, workflow=workflow)
    if step.state == StepState.SUCCEEDED:
        if step.step_id in workflow.fallbacks:
            _adopt_fallback_output(session, run, workflow, step)
        if step.action == "conditional" and isinstance(step.output, dict):
            skip_branches(
                session=session,
                run=run,
                workflow=workflow,
                origin=step.step_id,
                skipped=list(step.output.get("skipped", [])),
            )
    plain = (
        step.state == StepState.SUCCEEDED
        and step.action != "conditional"
        and step.step_id not in workflow.fallbacks
    )
    outbox_ids = readiness.dispatch_ready(
        session=session, run=run, workflow=workflow, after=step.step_id if plain else None
    )
    if plain and workflow.dependents[step.step_id]:
        return outbox_ids  # its dependents are queued or just were: the run cannot be done
    return outbox_ids + finish_if_done(session=session, run=run, workflow=workflow)


def _start_fallback(*, session: Session, run: Run, workflow: WorkflowDef, name: str) -> list[int]:
    fallback = session.scalar(
        select(StepRun).where(
            StepRun.run_id == run.id, StepRun.step_id == name, StepRun.parent_id.is_(None)
        )
    )
    assert fallback is not None
    if fallback.state != StepState.PENDING:
        return []
    store.set_step_state(
        session=session, step=fallback, target=StepState.QUEUED, message="fallback triggered"
    )
    return [store.enqueue_step(session=session, step=fallback, definition=workflow.step(name))]


def _adopt_fallback_output(
    session: Session, run: Run, workflow: WorkflowDef, step: StepRun
) -> None:
    """A succeeded fallback stands in for the step that failed: its output becomes theirs."""
    origins = [s.id for s in workflow.steps if s.on_error == step.step_id]
    for origin in session.scalars(
        select(StepRun).where(
            StepRun.run_id == run.id,
            StepRun.parent_id.is_(None),
            StepRun.step_id.in_(origins),
            StepRun.state == StepState.FAILED.value,
        )
    ):
        origin.output = step.output


def skip_branches(
    *, session: Session, run: Run, workflow: WorkflowDef, origin: str, skipped: list[str]
) -> None:
    """Skip the branches a conditional did not choose, and every step only they lead to."""
    by_id = {s.step_id: s for s in run.steps if s.parent_id is None}
    branch_skipped: set[str] = set()
    frontier = [sid for sid in skipped if sid in by_id]
    while frontier:
        for sid in frontier:
            step = by_id[sid]
            if step.state == StepState.PENDING:
                store.set_step_state(
                    session=session,
                    step=step,
                    target=StepState.SKIPPED,
                    message=f"branch not chosen by {origin!r}",
                )
                step.output = {"skipped_by": origin}
            branch_skipped.add(sid)
        frontier = [
            s.id
            for s in workflow.steps
            if s.id not in branch_skipped
            and s.depends_on
            and by_id[s.id].state == StepState.PENDING
            and all(d in branch_skipped for d in s.depends_on)
        ]


def cancel_unfinished(*, session: Session, run: Run, reason: str) -> None:
    for step in run.steps:
        if step.state not in STEP_TERMINAL:
            if step.waiting_for == "sub_run" and isinstance(step.output, dict):
                cancel_sub_run(session=session, run_id=step.output.get("run_id"), reason=reason)
            step.waiting_for = None
            store.set_step_state(
                session=session, step=step, target=StepState.CANCELLED, message=reason
            )


def cancel_sub_run(*, session: Session, run_id: Any, reason: str) -> None:
    try:
        child_id = uuid.UUID(str(run_id))
    except ValueError:
        return
    child = store.lock_run(session=session, run_id=child_id)
    if child.state in RUN_TERMINAL:
        return
    cancel_unfinished(session=session, run=child, reason=f"parent cancelled: {reason}")
    store.set_run_state(session=session, run=child, target=RunState.CANCELLED, message=reason)


def tolerated_failure(run: Run, workflow: WorkflowDef, step: StepRun) -> bool:
    """A failed step that does not fail the run: `on_error: continue`, or its fallback succeeded."""
    definition = workflow.step(step.step_id)
    if definition.on_error == "continue":
        return True
    fallback = definition.fallback
    if fallback is None:
        return False
    return any(s.step_id == fallback and s.state == StepState.SUCCEEDED for s in run.steps)


def finish_if_done(*, session: Session, run: Run, workflow: WorkflowDef) -> list[int]:
    """Close the run once nothing can still run; a sub-run then finishes its parent step."""
    if run.state in RUN_TERMINAL:
        return []
    dormant = workflow.fallbacks
    unfinished = session.scalar(
        select(func.count())
        .select_from(StepRun)
        .where(
            StepRun.run_id == run.id,
            StepRun.state.not_in([s.value for s in STEP_TERMINAL]),
            ~(
                StepRun.parent_id.is_(None)
                & StepRun.step_id.in_(list(dormant) or [""])
                & (StepRun.state == StepState.PENDING.value)
            ),
        )
    )
    if unfinished:
        return []
    for step in run.steps:
        if step.state == StepState.PENDING:
            store.set_step_state(
                session=session, step=step, target=StepState.SKIPPED, message="fallback not needed"
            )
    failed = [
        s
        for s in run.steps
        if s.parent_id is None
        and s.state in (StepState.FAILED, StepState.CANCELLED)
        and not tolerated_failure(run, workflow, s)
    ]
    if run.state in (RunState.PENDING, RunState.WAITING):
        store.set_run_state(session=session, run=run, target=RunState.RUNNING)
    if failed:
        first = next((s for s in failed if s.state == StepState.FAILED), failed[0])
        run.error = {"step": first.step_id, **(first.error or {"message": f"step {first.state}"})}
        store.set_run_state(
            session=session,
            run=run,
            target=RunState.FAILED,
            message=f"step {first.step_id!r} failed",
        )
    else:
        _complete(session, run, workflow)
    return _finish_parent_step(session=session, run=run)


def _complete(session: Session, run: Run, workflow: WorkflowDef) -> None:
    try:
        run.outputs = render_outputs(session, workflow, run)
    except Exception as exc:  # noqa: BLE001 - an output expression error fails the run, named
        run.error = {"step": None, "type": type(exc).__name__, "message": str(exc)}
        store.set_run_state(session=session, run=run, target=RunState.FAILED, message=str(exc))
        return
    store.set_run_state(session=session, run=run, target=RunState.SUCCEEDED)


def _finish_parent_step(*, session: Session, run: Run) -> list[int]:
    """A finished sub-run completes the `sub_workflow` step that started it."""
    if run.parent_step_run_id is None:
        return []
    parent_step = session.get(StepRun, run.parent_step_run_id)
    if parent_step is None:
        return []
    parent_run = store.lock_run(session=session, run_id=parent_step.run_id)
    session.refresh(parent_step)
    if parent_step.state != StepState.RUNNING or parent_step.waiting_for != "sub_run":
        return []
    parent_step.waiting_for = None
    target = StepState.SUCCEEDED
    message: str | None = None
    if run.state == RunState.SUCCEEDED:
        parent_step.output = {"run_id": str(run.id), "outputs": run.outputs}
    else:
        reason = (run.error or {}).get("message", "")
        target = StepState.FAILED
        message = f"sub-run {run.id} ({run.workflow_name}) {run.state}: {reason}"
        parent_step.error = {
            "type": "SubWorkflowFailed",
            "message": message.strip(),
            "run_id": str(run.id),
        }
    return finish_step(
        session=session,
        run=parent_run,
        workflow=workflow_of(session, parent_run),
        step=parent_step,
        target=target,
        message=message,
    ).outbox_ids

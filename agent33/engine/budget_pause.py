"""`on_budget: pause`: a step whose model call the budget refused waits, without a worker,
until someone raises the budget; then it runs again.

The refused call was never made, so running the step again from its start is safe (the model
calls it had made are answered again, or recorded again, like any retry).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent33.db.models import Run, RunBudget, StepRun
from agent33.engine import budgets, store
from agent33.engine.lifecycle import ControlResult
from agent33.engine.outcome import Outcome
from agent33.engine.states import RunState, StepState
from agent33.engine.workflows import step_definition, workflow_of
from agent33.errors import NotFound

PARKED = "budget"


def parks(error: Mapping[str, Any]) -> bool:
    """Whether a step's error is a refusal under a budget that pauses."""
    details = error.get("details")
    return (
        error.get("type") == "BudgetExceeded"
        and isinstance(details, Mapping)
        and details.get("on_budget") == "pause"
    )


def park(session: Session, run: Run, step: StepRun, error: Mapping[str, Any]) -> Outcome:
    step.lease_expires_at = None
    step.waiting_for = PARKED
    step.output = {"awaiting_budget": True, "message": error.get("message")}
    store.add_event(
        session=session,
        run_id=run.id,
        step_id=step.step_id,
        kind="step.waiting",
        message=f"awaiting a larger budget: {error.get('message')}",
        data=dict(error.get("details") or {}),
    )
    if run.state == RunState.RUNNING:
        store.set_run_state(
            session=session,
            run=run,
            target=RunState.WAITING,
            message=f"step {step.step_id!r} awaits a larger budget",
        )
    return Outcome("waiting")


def _tree(session: Session, root: uuid.UUID) -> list[uuid.UUID]:
    """The root run and every sub-run under it."""
    found, frontier = [root], [root]
    while frontier:
        steps = select(StepRun.id).where(StepRun.run_id.in_(frontier))
        frontier = list(session.scalars(select(Run.id).where(Run.parent_step_run_id.in_(steps))))
        found += frontier
    return found


def raise_budget(
    *,
    session: Session,
    run_id: uuid.UUID,
    tokens: int | None = None,
    cost: float | None = None,
    by: str | None = None,
) -> ControlResult:
    """Set new limits on the budget `run_id` spends (its root run's) and queue again every
    step of the run tree that waits for it. NotFound when the run or its budget is absent."""
    root = budgets.root_run(session=session, run_id=run_id)
    values: dict[str, Any] = {}
    if tokens is not None:
        values["token_limit"] = tokens
    if cost is not None:
        values["cost_limit"] = cost
    changed = session.execute(
        update(RunBudget)
        .where(RunBudget.run_id == root)
        .values(**values)
        .returning(RunBudget.run_id)
        .execution_options(synchronize_session=False)
    ).first()
    if changed is None:
        raise NotFound(f"run {run_id} has no budget", fields={"run_id": ["no budget"]})
    outbox: list[int] = []
    state = RunState.RUNNING.value
    for tree_run in _tree(session, root):
        run = store.lock_run(session=session, run_id=tree_run)
        store.add_event(
            session=session,
            run_id=run.id,
            kind="run.budget",
            message=f"budget raised by {by}",
            data={"tokens": tokens, "cost": cost},
        )
        parked = [s for s in run.steps if s.waiting_for == PARKED]
        if not parked:
            state = run.state if tree_run == run_id else state
            continue
        workflow = workflow_of(session, run)
        for step in parked:
            step.waiting_for = None
            step.deliveries = 0
            message = "budget raised: running again"
            store.set_step_state(
                session=session, step=step, target=StepState.RETRYING, message=message
            )
            store.set_step_state(session=session, step=step, target=StepState.QUEUED)
            definition = step_definition(session, workflow, step)
            outbox.append(store.enqueue_step(session=session, step=step, definition=definition))
        # A map parent waits for its children too: only what a person answers keeps it waiting.
        if run.state == RunState.WAITING and not any(
            s.waiting_for in ("approval", PARKED) for s in run.steps
        ):
            store.set_run_state(session=session, run=run, target=RunState.RUNNING)
        if tree_run == run_id:
            state = run.state
    return ControlResult(state=state, outbox_ids=outbox)

"""Fused segments (pure steps run one after the other by one message) and the chord body
that closes a parallel group; both build on the single-step runner."""

from __future__ import annotations

import uuid
from typing import Any

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.engine import children, readiness, store
from agent33.engine.completion import after_terminal
from agent33.engine.outcome import Outcome
from agent33.engine.runner import run_step
from agent33.engine.states import RUN_TERMINAL, StepState
from agent33.engine.workflows import workflow_of


def run_segment(
    step_run_id: str, then: list[str], settings: Settings, task_id: str | None, publish: Any
) -> Outcome:
    """A fused segment: each step in turn, each committed on its own; stop at the first that
    does not succeed and hand the rest back to normal dispatch (`pending`)."""
    outcome = run_step(step_run_id, settings, task_id)
    publish(outcome.outbox_ids)
    for index, next_id in enumerate(then):
        if outcome.status not in (
            "succeeded",
            "skipped",
            "duplicate:succeeded",
            "duplicate:skipped",
        ):
            publish(release(then[index:]))
            break
        outcome = run_step(next_id, settings, task_id)
        publish(outcome.outbox_ids)
    return Outcome(outcome.status)


def release(step_run_ids: list[str]) -> list[int]:
    """Steps of a fused segment that were not reached go back to `pending`, then whatever of
    them is ready (say, after a `continue` failure) is dispatched normally."""
    run: Run | None = None
    with session_scope() as session:
        for raw in step_run_ids:
            loaded = store.lock_step(session=session, step_run_id=uuid.UUID(raw))
            if loaded is None:
                continue
            step, run = loaded
            if step.state == StepState.QUEUED:
                store.set_step_state(
                    session=session,
                    step=step,
                    target=StepState.PENDING,
                    message="fused segment stopped before this step",
                )
        if run is None or run.state in RUN_TERMINAL:
            return []
        return readiness.dispatch_ready(
            session=session, run=run, workflow=workflow_of(session, run)
        )


def finalize_parent(step_run_id: str) -> Outcome:
    """The chord body: close a `parallel_group` whose children all ended (idempotent)."""
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=uuid.UUID(step_run_id))
        if loaded is None:
            return Outcome("missing")
        parent, run = loaded
        workflow = workflow_of(session, run)
        if not children.close_parent_if_done(
            session=session, run=run, parent=parent, workflow=workflow
        ):
            return Outcome(f"not-ready:{parent.state}")
        return Outcome(
            "joined", after_terminal(session=session, run=run, workflow=workflow, step=parent)
        )

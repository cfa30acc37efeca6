"""Several steps per message: fused segments (a line of pure steps) and batches (ready
siblings), each committed in transactions of up to BATCH_STEPS steps; and the chord body that
closes a parallel group. Both build on the single-step runner.

A message is acked only after its steps committed, so durability is the single step's: a lost
worker means redelivery, and steps already recorded are then skipped as duplicates. What one
transaction cannot do inline (an action with side effects, a step whose claim or record raises)
goes on one step per transaction, as `run_step` does it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import structlog

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.engine import children, readiness, store
from agent33.engine.completion import after_terminal, batched
from agent33.engine.failures import OUTAGES
from agent33.engine.outcome import Outcome
from agent33.engine.runner import run_inline, run_step
from agent33.engine.states import RUN_TERMINAL, StepState
from agent33.engine.workflows import workflow_of

log = structlog.get_logger(__name__)
Publish = Callable[[Sequence[int]], object]
BATCH_STEPS = 64  # steps per transaction: bounds how long one holds its run's row lock
CONTINUES = ("succeeded", "skipped", "duplicate:succeeded", "duplicate:skipped")


class _Stopped(Exception):  # noqa: N818 - control flow inside this module
    """Step `index` of a transaction is not inline or raised: the transaction rolls back."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _transaction(
    step_run_ids: list[str], settings: Settings, task_id: str | None, *, line: bool
) -> tuple[list[Outcome], list[int], int]:
    """Run steps inline in one transaction, readiness deferred to its end; in a `line`, stop
    after the first step that does not succeed. Returns the outcomes, the outbox ids to publish
    after the commit, and how many steps it consumed.

    No savepoint per step (two round trips each): a step that is not inline or raises rolls the
    whole transaction back, the steps before it run again in a transaction of their own, and
    the caller gives that step `run_step`'s path (0 consumed when it is the first).
    """
    outcomes: list[Outcome] = []
    idents = _parse_ids(step_run_ids)
    try:
        with session_scope() as session, batched(session) as outbox_ids:
            store.lock_steps(session=session, step_run_ids=[i for i in idents if i is not None])
            for index, ident in enumerate(idents):
                if ident is None:
                    outcomes.append(Outcome("invalid-id"))
                    continue
                try:
                    outcome = run_inline(session, ident, settings, task_id)
                    session.flush()  # a row the database refuses is this step's, not the next's
                except OUTAGES:
                    raise
                except Exception as exc:  # noqa: BLE001 - not inline, or failing: redone below
                    raise _Stopped(index) from exc
                outcomes.append(outcome)
                outbox_ids.extend(outcome.outbox_ids)
                if line and outcome.status not in CONTINUES:
                    break
    except _Stopped as stopped:
        if stopped.index == 0:
            return [], [], 0
        return _transaction(step_run_ids[: stopped.index], settings, task_id, line=line)
    except OUTAGES:
        raise
    except Exception:  # noqa: BLE001 - planning or commit at the end: each step on its own path
        log.warning("segment.transaction_failed", steps=len(step_run_ids), exc_info=True)
        return [], [], 0
    return outcomes, outbox_ids, len(outcomes)


def _parse_ids(raw_ids: list[str]) -> list[uuid.UUID | None]:
    parsed: list[uuid.UUID | None] = []
    for raw in raw_ids:
        try:
            parsed.append(uuid.UUID(raw))
        except ValueError:
            parsed.append(None)
    return parsed


def run_segment(
    step_run_id: str, then: list[str], settings: Settings, task_id: str | None, publish: Publish
) -> Outcome:
    """A fused segment: its steps in order, in transactions of up to BATCH_STEPS; stop at the
    first that does not succeed and hand the rest back to normal dispatch (`pending`)."""
    remaining = [step_run_id, *then]
    outcome = Outcome("empty")
    while remaining:
        outcomes, outbox_ids, done = _transaction(
            remaining[:BATCH_STEPS], settings, task_id, line=True
        )
        publish(outbox_ids)
        if done:
            outcome = outcomes[-1]
        else:  # the first step needs a transaction of its own
            outcome = run_step(remaining[0], settings, task_id)
            publish(outcome.outbox_ids)
            done = 1
        remaining = remaining[done:]
        if remaining and outcome.status not in CONTINUES:
            publish(release(remaining))
            break
    return Outcome(outcome.status)


def run_batch(
    step_run_ids: list[str], settings: Settings, task_id: str | None, publish: Publish
) -> Outcome:
    """Ready siblings sent as one message: each runs whatever the others do, inline ones
    committed together in transactions of up to BATCH_STEPS steps."""
    remaining = list(step_run_ids)
    statuses: list[str] = []
    while remaining:
        outcomes, outbox_ids, done = _transaction(
            remaining[:BATCH_STEPS], settings, task_id, line=False
        )
        publish(outbox_ids)
        statuses.extend(o.status for o in outcomes)
        if not done:
            outcome = run_step(remaining[0], settings, task_id)
            publish(outcome.outbox_ids)
            statuses.append(outcome.status)
            done = 1
        remaining = remaining[done:]
    failed = [s for s in statuses if s not in CONTINUES]
    return Outcome(failed[0] if failed else (statuses[-1] if statuses else "empty"))


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

"""A step that cannot be started or recorded fails, with the error recorded, for good.

The claim or record transaction that raised was rolled back, so without this the step would be
left `queued` (or `running`) for the reaper to hand out again and again. Database outages are
not failures of the step: they propagate, and the task retries the delivery.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from agent33.db import session_scope
from agent33.engine import lease, store
from agent33.engine.completion import fail_step
from agent33.engine.errors import error_dict
from agent33.engine.outcome import Outcome
from agent33.engine.states import RUN_TERMINAL, STEP_TERMINAL, StepState
from agent33.engine.workflows import workflow_of
from agent33.errors import Agent33Error, ExpressionError

log = structlog.get_logger(__name__)
OUTAGES = (OperationalError, InterfaceError)  # the delivery is retried, not the step failed
MESSAGE_CAP = 1000


def expression_error(exc: Exception, step_id: str) -> dict[str, Any]:
    """The error of a `when:` or `with:` that did not evaluate: never retryable (the same
    inputs give the same failure), whatever the exception type."""
    if not isinstance(exc, Agent33Error):
        exc = ExpressionError(
            f"step {step_id!r}: expression failed: {type(exc).__name__}: {storable_text(exc)}"
        )
    return {**error_dict(exc), "retryable": False}


def storable_text(exc: BaseException) -> str:
    """A storable, bounded message: a driver error's own text (not the SQL and its
    parameters), no NUL (PostgreSQL text refuses it), at most MESSAGE_CAP characters."""
    raw = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = (str(raw) or type(raw).__name__).replace("\x00", "\\x00")
    return text if len(text) <= MESSAGE_CAP else text[:MESSAGE_CAP] + "... [truncated]"


def fail_unexpected(
    step_run_id: uuid.UUID,
    exc: Exception,
    *,
    stage: Literal["start", "record"],
    attempt: int | None = None,
) -> Outcome:
    """Fail a step whose claim (`stage="start"`) or record (`stage="record"`) raised something
    unexpected; its own transaction, as the one that raised was rolled back. `attempt`: only
    that attempt is failed (a later delivery may have taken the step over)."""
    log.warning("step.unexpected_error", step_run_id=str(step_run_id), stage=stage, exc_info=exc)
    error = {
        "type": type(exc).__name__,
        "code": "step_error",
        "retryable": False,
        "message": f"step could not be {'started' if stage == 'start' else 'recorded'}: "
        f"{type(exc).__name__}: {storable_text(exc)}",
    }
    with session_scope() as session:
        loaded = store.lock_step(session=session, step_run_id=step_run_id)
        if loaded is None:
            return Outcome("missing")
        step, run = loaded
        if step.state in STEP_TERMINAL or run.state in RUN_TERMINAL:
            return Outcome(f"duplicate:{step.state}")
        if attempt is not None and (step.state != StepState.RUNNING or step.attempt != attempt):
            return Outcome(f"stale:{step.state}")
        if step.state not in (StepState.QUEUED, StepState.RUNNING):
            return Outcome(f"not-queued:{step.state}")
        if attempt is None and lease.held_elsewhere(step):
            return Outcome("duplicate:running")
        if stage == "start":
            step.deliveries += 1
        return fail_step(
            session=session, run=run, workflow=workflow_of(session, run), step=step, error=error
        )

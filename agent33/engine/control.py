"""Operator actions on a run: cancel, resume from checkpoints, approve a waiting step.

Each takes `session=` and never commits; the caller publishes the returned outbox ids (and
revokes the returned task ids) after its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session


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
    from agent33.engine.lifecycle import cancel

    return cancel(session=session, run_id=run_id, by=by)


def resume_run(*, session: Session, run_id: uuid.UUID, by: str | None = None) -> ControlResult:
    """Re-plan a failed or cancelled run from its checkpoints: only what did not succeed runs.

    Raises NotFound, or Conflict when the run is not failed/cancelled.
    """
    from agent33.engine.lifecycle import resume

    return resume(session=session, run_id=run_id, by=by)


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
    from agent33.engine.lifecycle import approve

    return approve(
        session=session, run_id=run_id, step_id=step_id, approved=approved, comment=comment, by=by
    )

"""Run-level operations used by the API and the CLI (each takes `session=`, never commits)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from agent33.db.models import Run, RunEvent
from agent33.engine import store
from agent33.errors import NotFound


def start_run(
    *,
    session: Session,
    workflow_name: str,
    inputs: dict[str, Any],
    version: int | None = None,
    idempotency_key: str | None = None,
    created_by: str | None = None,
) -> tuple[Run, list[int], bool]:
    """Create a run, its steps and the outbox rows for the first ready segment.

    Returns (run, outbox_ids_to_flush_after_commit, created). With a repeated idempotency key
    returns the existing run, no outbox ids and created=False.
    Raises NotFound (unknown workflow) or ValidationFailed (inputs do not match the schema;
    `fields` maps `inputs.<path>` to messages).
    """
    return store.create_run(
        session=session,
        workflow_name=workflow_name,
        inputs=inputs,
        version=version,
        idempotency_key=idempotency_key,
        created_by=created_by,
    )


def get_run(*, session: Session, run_id: uuid.UUID) -> Run:
    """The run with its steps loaded; NotFound when absent."""
    run = session.scalar(select(Run).where(Run.id == run_id).options(selectinload(Run.steps)))
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    return run


def list_events(*, session: Session, run_id: uuid.UUID) -> list[RunEvent]:
    return list(
        session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))
    )


def list_runs(
    *,
    session: Session,
    workflow: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """A page of runs (newest first) and the total count matching the filters."""
    query = select(Run)
    if workflow:
        query = query.where(Run.workflow_name == workflow)
    if state:
        query = query.where(Run.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Run.created_at.desc()).limit(limit).offset(offset))
    return list(rows), int(total)

"""The dead-letter queue: messages the system gave up on, kept with their payload, attempts
and last error so an operator can read them, replay them or purge them.

Three kinds: `webhook` (a delivery that spent its attempts), `step` (a step the reaper
failed after its delivery budget: WorkerLost or MessageLost) and `channel` (a chat answer a
platform refused or kept failing). Replaying is the caller's job
(it needs the engine or the broker); this module only keeps the rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from agent33.db.base import utcnow
from agent33.db.models import DeadLetter
from agent33.errors import NotFound
from agent33.observability import metrics

WEBHOOK = "webhook"
STEP = "step"
CHANNEL = "channel"  # a messaging-channel answer the platform would not take
KINDS = (WEBHOOK, STEP, CHANNEL)


def record(
    *,
    session: Session,
    kind: str,
    ref: str,
    payload: dict[str, Any],
    attempts: int,
    last_error: str | None,
    run_id: uuid.UUID | None = None,
) -> DeadLetter:
    letter = DeadLetter(
        kind=kind,
        ref=ref,
        run_id=run_id,
        payload=payload,
        attempts=attempts,
        last_error=last_error,
    )
    session.add(letter)
    metrics.after_commit(session.info, metrics.record_dead_letter, kind)
    return letter


def get(*, session: Session, letter_id: uuid.UUID, lock: bool = False) -> DeadLetter:
    letter = session.get(DeadLetter, letter_id, with_for_update=lock)
    if letter is None:
        raise NotFound(f"dead letter {letter_id} not found", fields={"id": ["not found"]})
    return letter


def list_page(
    *, session: Session, kind: str | None, limit: int, offset: int
) -> tuple[list[DeadLetter], int]:
    query = select(DeadLetter)
    counted = select(func.count()).select_from(DeadLetter)
    if kind is not None:
        query = query.where(DeadLetter.kind == kind)
        counted = counted.where(DeadLetter.kind == kind)
    rows = session.scalars(
        query.order_by(DeadLetter.created_at.desc(), DeadLetter.id).limit(limit).offset(offset)
    )
    return list(rows), int(session.scalar(counted) or 0)


def mark_replayed(letter: DeadLetter) -> None:
    letter.replayed_at = utcnow()


def purge(*, session: Session, kind: str | None = None) -> int:
    """Delete every dead letter (of one kind); returns how many."""
    statement = delete(DeadLetter)
    if kind is not None:
        statement = statement.where(DeadLetter.kind == kind)
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def remove(*, session: Session, letter_id: uuid.UUID) -> None:
    session.delete(get(session=session, letter_id=letter_id))

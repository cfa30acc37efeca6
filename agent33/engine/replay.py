"""Replaying a dead letter: a webhook delivery is sent again, a lost step's run resumes, a
channel answer sends its unsent chunks again.

A replayed delivery gets a fresh attempt budget and keeps its `webhook-id`, so a receiver that
did get an earlier attempt drops it as a duplicate; a dead-lettered step goes through the same
resume path as `POST /runs/<id>/resume` (only what did not succeed runs again).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from agent33.automation import dead_letters, delivery, webhooks_out
from agent33.db.base import utcnow
from agent33.db.models import ChannelOutbound, OutboxMessage
from agent33.engine.lifecycle import resume_run
from agent33.errors import Conflict


@dataclass
class Replayed:
    """After the commit: publish `outbox_ids`, and `delivery_ids` directly (no run to hang an
    outbox row on)."""

    kind: str
    outbox_ids: list[int] = field(default_factory=list)
    delivery_ids: list[int] = field(default_factory=list)
    channel_ids: list[int] = field(default_factory=list)


def replay(*, session: Session, letter_id: uuid.UUID, by: str | None = None) -> Replayed:
    letter = dead_letters.get(session=session, letter_id=letter_id, lock=True)
    result = Replayed(kind=letter.kind)
    if letter.kind == dead_letters.WEBHOOK:
        reopened = delivery.reopen(session=session, delivery_id=int(letter.ref))
        if reopened.run_id is not None:
            row = OutboxMessage(
                run_id=reopened.run_id, payload=webhooks_out.delivery_message(reopened.id)
            )
            session.add(row)
            session.flush()
            result.outbox_ids.append(row.id)
        else:
            result.delivery_ids.append(reopened.id)
    elif letter.kind == dead_letters.STEP:
        if letter.run_id is None:
            raise Conflict(
                f"dead letter {letter_id}: its run was deleted", fields={"run_id": ["deleted"]}
            )
        resumed = resume_run(session=session, run_id=letter.run_id, by=by)
        result.outbox_ids.extend(resumed.outbox_ids)
    elif letter.kind == dead_letters.CHANNEL:
        answer = session.get(ChannelOutbound, int(letter.ref), with_for_update=True)
        if answer is None:
            raise Conflict(
                f"dead letter {letter_id}: its channel answer was deleted",
                fields={"ref": ["deleted"]},
            )
        answer.state = "pending"  # the unsent chunks only, with a fresh attempt budget
        answer.attempts = 0
        answer.next_attempt_at = utcnow()
        result.channel_ids.append(answer.id)
    dead_letters.mark_replayed(letter)
    return result

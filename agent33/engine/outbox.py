"""Publish committed outbox rows; a broker outage leaves them for the relay, never loses them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import select

from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import OutboxMessage
from agent33.engine import store

log = structlog.get_logger(__name__)
Publisher = Callable[[Mapping[str, Any]], None]


def publish_pending(*, outbox_ids: Sequence[int], publisher: Publisher) -> int:
    """Publish these rows (each in its own short transaction); returns how many went out."""
    sent = 0
    for outbox_id in outbox_ids:
        with session_scope() as session:
            message = session.scalar(
                select(OutboxMessage)
                .where(OutboxMessage.id == outbox_id, OutboxMessage.published_at.is_(None))
                .with_for_update(skip_locked=True)
            )
            if message is None:
                continue
            message.attempts += 1
            store.relax_commit(session=session)  # lost in a crash: published again, harmless
            try:
                publisher(message.payload)
            except Exception as exc:  # noqa: BLE001 - any broker failure: leave it for the relay
                log.warning("outbox.publish_failed", outbox_id=outbox_id, error=str(exc))
                continue
            message.published_at = utcnow()
            sent += 1
    return sent


def stale_ids(*, older_than: float = 10.0, limit: int = 500) -> list[int]:
    """Unpublished rows old enough that the request which wrote them did not publish them."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.published_at.is_(None), OutboxMessage.created_at < cutoff)
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
        )

"""Publish committed outbox rows; a broker outage leaves them for the relay, never loses them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import BigInteger, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.event import contains, listen
from sqlalchemy.orm import Session

from agent33.automation.webhooks_out import AFTER_COMMIT
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import OutboxMessage

log = structlog.get_logger(__name__)
Publisher = Callable[[Mapping[str, Any]], None]
_flushers: list[Callable[[Sequence[int]], object]] = []


def publish_after_commit(flush: Callable[[Sequence[int]], object]) -> None:
    """Publish the outbox rows a transaction parked in `session.info[AFTER_COMMIT]` as soon as
    it commits (rows written deep in the engine, e.g. webhook deliveries, whose ids no caller
    threads back). Installed once per process by the publisher; the relay covers a failure."""
    _flushers[:] = [flush]
    if not contains(Session, "after_commit", _after_commit):
        listen(Session, "after_commit", _after_commit)
        listen(Session, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    ids = session.info.pop(AFTER_COMMIT, None)
    if ids and _flushers:
        try:
            _flushers[0](list(ids))
        except Exception as exc:  # noqa: BLE001 - the relay publishes what is left
            log.warning("outbox.after_commit_failed", outbox_ids=list(ids), error=str(exc))


def _after_rollback(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)


def publish_pending(*, outbox_ids: Sequence[int], publisher: Publisher) -> int:
    """Publish these rows in one short transaction of three statements; returns how many went
    out. Rows another publisher holds (the relay) are skipped, not waited for.

    The first statement takes the rows, counts the attempt and relaxes this transaction's
    commit (a `published_at` lost in a database crash only means a second publish, which the
    runner drops as a duplicate); the second marks what the broker accepted."""
    if not outbox_ids:
        return 0
    sent: list[int] = []
    with session_scope() as session:
        rows = session.execute(_TAKE, {"ids": list(outbox_ids)}).all()
        for outbox_id, payload, _ in sorted(rows):
            try:
                publisher(payload)
            except Exception as exc:  # noqa: BLE001 - any broker failure: leave it for the relay
                log.warning("outbox.publish_failed", outbox_id=outbox_id, error=str(exc))
                continue
            sent.append(outbox_id)
        if sent:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(sent))
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    return len(sent)


_TAKE = text(
    """
    WITH taken AS (
        SELECT id FROM outbox_messages
        WHERE id = ANY(:ids) AND published_at IS NULL
        FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox_messages AS o SET attempts = o.attempts + 1
    FROM taken WHERE o.id = taken.id
    RETURNING o.id, o.payload, set_config('synchronous_commit', 'off', true)
    """
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


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

"""Write audit events: logins, key changes, denials and rate-limit hits, for later forensics.

`record` joins the caller's transaction, so an audited change and its audit row commit (or roll
back) together. `record_now` commits on its own: a denial's request transaction is rolled back,
and the denial must be kept anyway. Details are scrubbed of secret-looking keys before they are
stored, because an audit table is read by more people than the secrets it would otherwise leak.
`record_now_bounded` keeps a flood (an unauthenticated client sending bad credentials) from
filling the table: a few rows per source and window, the rest counted.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, Unpack

import redis
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.db.models import AuditEvent

log = logging.getLogger(__name__)

Outcome = Literal["ok", "denied", "failed"]
OUTCOMES: tuple[str, ...] = ("ok", "denied", "failed")

# A detail key is dropped when it contains one of these words anywhere ...
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "authorization")
# ... or when its last `_`/`-`/`.` separated part is one of these (`key_id` stays, `raw_key` goes).
_SECRET_TAILS = frozenset({"key", "apikey", "pwd", "hash", "cookie"})
REDACTED_KEYS_FIELD = "redacted"
BOUND_PREFIX = "agent33:audit-bound:"
BOUND_WINDOW_S = 60
BOUND_ROWS = 5


class EventFields(TypedDict, total=False):
    """The optional columns of an audit row, shared by `record`, `record_now` and
    `record_now_bounded` so the three cannot drift apart."""

    principal: str | None
    ip: str | None
    target: str | None
    details: Mapping[str, Any] | None


def is_secret_name(name: str) -> bool:
    """True for detail keys that name a secret (`password`, `api_key`, `access_token`, ...)."""
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return True
    parts = [part for part in re.split(r"[_\-.\s]+", lowered) if part]
    return bool(parts) and (parts[-1] in _SECRET_TAILS or lowered.endswith("apikey"))


def scrub(value: Any) -> Any:
    """`value` with every secret-named key removed, recursively, made JSON-safe (str fallback)."""
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items() if not is_secret_name(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.loads(json.dumps(value, default=str))


def record(
    *, session: Session, action: str, outcome: Outcome, **fields: Unpack[EventFields]
) -> AuditEvent:
    """Add an audit row to `session` (never commits: it rides on the caller's transaction)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    principal, ip = fields.get("principal"), fields.get("ip")
    target, details = fields.get("target"), fields.get("details")
    event = AuditEvent(
        action=action,
        outcome=outcome,
        principal=principal[:200] if principal else principal,
        ip=ip[:64] if ip else ip,
        target=target[:500] if target else target,
        details=scrub(details) if details is not None else None,
    )
    session.add(event)
    return event


def record_now(*, action: str, outcome: Outcome, **fields: Unpack[EventFields]) -> bool:
    """Record in a transaction of its own and commit it; False (logged) if the database fails.

    Used on refusal paths: the refusal is already the safe outcome, so a database outage must
    not turn a 401/403/429 into a 500; the event is still written to the log.
    """
    try:
        with session_scope() as session:
            record(session=session, action=action, outcome=outcome, **fields)
        return True
    except SQLAlchemyError as error:
        log.error(
            "audit event %s (%s) for %s from %s on %s not stored: %s",
            action,
            outcome,
            fields.get("principal"),
            fields.get("ip"),
            fields.get("target"),
            error,
        )
        return False


def record_now_bounded(
    *,
    client: redis.Redis,
    source: str,
    action: str,
    outcome: Outcome,
    now: float | None = None,
    **fields: Unpack[EventFields],
) -> bool:
    """`record_now`, at most BOUND_ROWS rows per (`action`, `source`) per BOUND_WINDOW_S window.

    Each row carries `repeat` (its rank in the window); the last one says later events of the
    window go unrecorded, and the next window's first row (if any) holds how many. Redis down:
    logged, not stored (the refusal itself stands). True when a row was written.
    """
    window = int((time.time() if now is None else now) // BOUND_WINDOW_S)
    key = f"{BOUND_PREFIX}{action}:{source}:"
    try:
        pipe = client.pipeline()
        pipe.incr(f"{key}{window}")
        pipe.expire(f"{key}{window}", 2 * BOUND_WINDOW_S + 5)
        pipe.get(f"{key}{window - 1}")
        count, _, previous = pipe.execute()
    except redis.RedisError as error:
        log.error("audit event %s from %s not stored (redis: %s)", action, source, error)
        return False
    if int(count) > BOUND_ROWS:
        return False
    extra: dict[str, Any] = {"repeat": int(count), "window_s": BOUND_WINDOW_S}
    if int(count) == BOUND_ROWS:
        extra["later_in_window"] = "counted, not recorded"
    if int(count) == 1 and previous is not None and int(previous) > BOUND_ROWS:
        extra["unrecorded_last_window"] = int(previous) - BOUND_ROWS
    fields["details"] = {**(fields.get("details") or {}), **extra}
    return record_now(action=action, outcome=outcome, **fields)


def list_events(
    *, session: Session, action: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[AuditEvent], int]:
    """A page of events, newest first (identity order is insertion order), and the total."""
    query = select(AuditEvent)
    count = select(func.count()).select_from(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
        count = count.where(AuditEvent.action == action)
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return list(rows), int(session.scalar(count) or 0)

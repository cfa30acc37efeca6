"""Chat sessions: a short-term buffer in Redis in front of the durable record in PostgreSQL.

Every turn reads its history, so the hot path is one Redis `LRANGE` of the last `BUFFER_SIZE`
messages; the buffer expires after a day of silence and is then rebuilt from `chat_messages`,
which keeps every message forever (the API reads transcripts from there). Only user/assistant
text is kept: tool turns are re-derived by the model, and replaying stale tool results would
pin answers to old data (the clock, for one).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import ChatMessage
from agent33.errors import ServiceUnavailable
from agent33.llm.types import Message

BUFFER_SIZE = 40
BUFFER_TTL_S = 24 * 3600
KEY_PREFIX = "agent33:session:"
CHANNEL_PREFIX = "agent33:chat:"

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One message to record; `usage` only on assistant answers."""

    role: str
    content: str
    usage: dict[str, Any] | None = None


def buffer_key(session_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}{session_id}"


RESULT_PREFIX = "agent33:chat-result:"
RESULT_TTL_S = 300


def result_key(request_id: str) -> str:
    """The list one chat request's final result is pushed to (BLPOP-ed by the API thread)."""
    return f"{RESULT_PREFIX}{request_id}"


def deliver_result(settings: Settings, request_id: str, result: dict[str, Any]) -> None:
    """Hand the result straight to the waiting API thread, with a TTL if nobody waits."""
    key = result_key(request_id)
    pipe = redis_client(settings).pipeline()
    pipe.lpush(key, json.dumps(result, default=str))
    pipe.expire(key, RESULT_TTL_S)
    pipe.execute()


def wait_result(settings: Settings, request_id: str, timeout: float) -> dict[str, Any] | None:
    """BLPOP in short slices (the pooled client has a socket timeout); None after `timeout`."""
    client = redis_client(settings)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        popped = client.blpop([result_key(request_id)], timeout=max(1, min(4, int(left))))
        if popped is not None:
            value: dict[str, Any] = json.loads(popped[1])
            return value
    return None


def chat_channel(request_id: str) -> str:
    """The pub/sub channel one chat request streams its tokens on."""
    return f"{CHANNEL_PREFIX}{request_id}"


def redis_client(settings: Settings) -> redis.Redis:
    """One pooled client per process and URL (workers and web threads share it)."""
    url = settings.redis_url
    if not url:
        raise ServiceUnavailable("REDIS_URL is not set: chat sessions need Redis")
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(
                url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
            )
        return _clients[url]


def _as_message(role: str, content: str) -> Message:
    return Message("assistant" if role == "assistant" else "user", content)


def load_history(*, session: Session, settings: Settings, session_id: uuid.UUID) -> list[Message]:
    """The last `BUFFER_SIZE` messages: the Redis buffer, else rebuilt from the database."""
    client = redis_client(settings)
    key = buffer_key(session_id)
    raw: list[bytes] = client.lrange(key, -BUFFER_SIZE, -1)  # type: ignore[assignment]
    if raw:
        items = [json.loads(item) for item in raw]
        return [_as_message(item["role"], item["content"]) for item in items]
    rows = list(
        session.scalars(
            select(ChatMessage)
            .where(ChatMessage.session_id == session_id)
            .order_by(ChatMessage.id.desc())
            .limit(BUFFER_SIZE)
        )
    )
    rows.reverse()
    if rows:
        _push(client, key, [Entry(row.role, row.content) for row in rows])
    return [_as_message(row.role, row.content) for row in rows]


def record_messages(
    *,
    session: Session,
    session_id: uuid.UUID,
    agent: str,
    entries: Sequence[Entry],
    request_id: str | None = None,
) -> bool:
    """The durable half of a turn; the caller's session scope commits it. Keyed by
    (`request_id`, role): False when this turn was already recorded (a redelivery after the
    commit), so it is never stored twice. One INSERT either way."""
    now = utcnow()
    rows = [
        {
            "session_id": session_id,
            "agent": agent,
            "role": e.role,
            "content": e.content,
            "usage": e.usage,
            "request_id": request_id,
            "created_at": now,
        }
        for e in entries
    ]
    statement = (
        pg_insert(ChatMessage)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["request_id", "role"])
        .returning(ChatMessage.id)
    )
    return bool(session.execute(statement).all())


def recorded_answer(*, session: Session, request_id: str) -> ChatMessage | None:
    """The assistant message turn `request_id` recorded, if it got that far (read only when a
    turn is redelivered)."""
    query = select(ChatMessage).where(
        ChatMessage.request_id == request_id, ChatMessage.role == "assistant"
    )
    return session.scalars(query).first()


def finish_turn(
    settings: Settings,
    *,
    session_id: uuid.UUID,
    entries: Sequence[Entry],
    request_id: str,
    result: dict[str, Any],
    channel: str | None = None,
    buffer: bool = True,
) -> None:
    """After the turn's commit, in one round trip: append the turn to the buffer, hand the
    result to the waiting API thread (as `deliver_result`) and, when streamed, publish `done`
    on `channel`. One MULTI, so the buffer holds the turn before anyone is told it finished;
    after the commit, so the buffer never holds a turn the database lost (`load_history`
    already rebuilt an expired buffer, so this only appends). `buffer=False` for a turn an
    earlier delivery already recorded (and buffered)."""
    pipe = redis_client(settings).pipeline(transaction=True)
    if buffer:
        _queue_push(pipe, buffer_key(session_id), entries)
    data = json.dumps(result, default=str)
    if channel is not None:
        pipe.publish(channel, json.dumps({"done": True, "result": result}, default=str))
    pipe.lpush(result_key(request_id), data)
    pipe.expire(result_key(request_id), RESULT_TTL_S)
    pipe.execute()


def _push(client: redis.Redis, key: str, entries: Sequence[Entry]) -> None:
    pipe = client.pipeline(transaction=True)
    _queue_push(pipe, key, entries)
    pipe.execute()


def _queue_push(pipe: Any, key: str, entries: Sequence[Entry]) -> None:
    pipe.rpush(key, *(json.dumps({"role": e.role, "content": e.content}) for e in entries))
    pipe.ltrim(key, -BUFFER_SIZE, -1)
    pipe.expire(key, BUFFER_TTL_S)


def transcript(*, session: Session, session_id: uuid.UUID) -> list[ChatMessage]:
    """Every stored message of a session, oldest first."""
    query = select(ChatMessage).where(ChatMessage.session_id == session_id)
    return list(session.scalars(query.order_by(ChatMessage.id)))

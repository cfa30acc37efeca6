"""The internal event bus: run, step, approval and alert events on one Redis Stream.

Publishers `XADD` with an approximate `MAXLEN`, so the stream stays bounded however long
nobody reads it. Each subscriber is a consumer group: every group sees every event, and
within a group each event goes to one consumer and stays pending until that consumer
acknowledges it. Delivery is at least once: a consumer that dies mid-event gets its pending
entries again when it restarts under the same name, and another consumer claims entries left
idle longer than `reclaim_idle_ms` (`XAUTOCLAIM`). Handlers must therefore be idempotent.

The processes that open the database (`db.configure`) bind the bus to the same settings'
Redis; the engine publishes its rare run transitions after their commit. With no Redis URL
the bus is off and publishing is a no-op.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

log = structlog.get_logger(__name__)

STREAM = "agent33:events"
MAXLEN = 10_000
RECLAIM_IDLE_MS = 30_000

_lock = threading.Lock()
_bound: dict[str, str] = {}
_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


class EventBus:
    """One stream; `maxlen` bounds it (approximately, which keeps XADD O(1))."""

    def __init__(self, client: redis.Redis, stream: str = STREAM, maxlen: int = MAXLEN) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen

    def publish(self, event_type: str, data: dict[str, Any]) -> str:
        fields = {"type": event_type, "data": json.dumps(data, default=str)}
        event_id = self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        return _text(event_id)

    def subscribe(self, group: str, *, from_start: bool = False) -> None:
        """Create consumer group `group` (idempotent): new events only, or the whole stream."""
        try:
            self.client.xgroup_create(
                self.stream, group, id="0" if from_start else "$", mkstream=True
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(
        self,
        group: str,
        consumer: str,
        *,
        count: int = 10,
        block_ms: int | None = 1000,
        reclaim_idle_ms: int = RECLAIM_IDLE_MS,
    ) -> list[Event]:
        """The next events for `consumer`: its own unacknowledged ones first (it crashed
        before acking), then entries other consumers left idle too long, then new ones
        (waiting up to `block_ms` for them; None: not at all)."""
        own = self.client.xreadgroup(group, consumer, {self.stream: "0"}, count=count)
        events = self._events(group, own)
        if events:
            return events
        claimed = self.client.xautoclaim(
            self.stream, group, consumer, min_idle_time=reclaim_idle_ms, start_id="0-0", count=count
        )
        events = self._events(group, [[self.stream, claimed[1]]])
        if events:
            return events
        fresh = self.client.xreadgroup(
            group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return self._events(group, fresh)

    def ack(self, group: str, *event_ids: str) -> None:
        if event_ids:
            self.client.xack(self.stream, group, *event_ids)

    def pending(self, group: str) -> int:
        summary = self.client.xpending(self.stream, group)
        return int(summary["pending"])

    def _events(self, group: str, reply: Any) -> list[Event]:
        events: list[Event] = []
        for _, entries in reply or []:
            for raw_id, fields in entries or []:
                event_id = _text(raw_id)
                if not fields:  # trimmed by MAXLEN while pending: nothing left to deliver
                    self.ack(group, event_id)
                    continue
                values = {_text(k): _text(v) for k, v in fields.items()}
                events.append(
                    Event(event_id, values.get("type", ""), json.loads(values.get("data", "{}")))
                )
        return events


def consume(
    bus: EventBus,
    group: str,
    consumer: str,
    handler: Callable[[Event], None],
    *,
    stop: threading.Event,
    block_ms: int = 500,
    reclaim_idle_ms: int = RECLAIM_IDLE_MS,
) -> None:
    """Handle events until `stop` is set; an event is acknowledged only after its handler
    returned, so a crash (or a raising handler) leaves it pending for a retry."""
    bus.subscribe(group)
    while not stop.is_set():
        for event in bus.read(group, consumer, block_ms=block_ms, reclaim_idle_ms=reclaim_idle_ms):
            try:
                handler(event)
            except Exception as exc:  # noqa: BLE001 - kept pending, retried after reclaim_idle_ms
                log.warning(
                    "eventbus.handler_failed", event_id=event.id, type=event.type, error=str(exc)
                )
                continue
            bus.ack(group, event.id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def configure(redis_url: str | None) -> None:
    """Bind this process's bus to `redis_url` (None: publishing is a no-op)."""
    with _lock:
        if redis_url:
            _bound["url"] = redis_url
        else:
            _bound.pop("url", None)


def bus() -> EventBus | None:
    """The process's bus, or None when none is configured."""
    url = _bound.get("url")
    if url is None:
        return None
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        return EventBus(_clients[url])


def publish(event_type: str, data: dict[str, Any]) -> None:
    """Publish if a bus is configured; a Redis outage is logged, never raised (the run's own
    rows stay the record, and outbound webhooks have their own outbox)."""
    target = bus()
    if target is None:
        return
    try:
        target.publish(event_type, data)
    except redis.RedisError as exc:
        log.warning("eventbus.publish_failed", type=event_type, error=str(exc))

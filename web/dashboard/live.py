"""Server-Sent Events for the run page: the run's state and steps, sent whenever they change.

The server polls PostgreSQL (one short transaction per tick) rather than listening to the
broker, so any API process can serve any run. The stream ends when the run is terminal, after
`MAX_SECONDS` (the browser's EventSource reconnects by itself), or when the client goes away:
writing the next heartbeat to a closed socket ends the generator, so under gunicorn's gthread
workers a closed tab frees its thread within `HEARTBEAT_SECONDS`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from agent33.db import session_scope
from agent33.errors import NotFound
from web.dashboard.runview import snapshot

INTERVAL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
MAX_SECONDS = 600.0
RETRY_MS = 2000


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def events(
    run_id: uuid.UUID,
    *,
    interval: float = INTERVAL_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> Iterator[str]:
    """`run` events with the run's snapshot on every change, then `end` once it is terminal."""
    started = last_sent = time.monotonic()
    previous: str | None = None
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        try:
            with session_scope() as session:
                current = snapshot(session=session, run_id=run_id)
        except NotFound:
            yield _event("end", {"state": None})  # the run was deleted while followed
            return
        encoded = json.dumps(current, default=str, sort_keys=True)
        now = time.monotonic()
        if encoded != previous:
            previous, last_sent = encoded, now
            yield _event("run", current)
        elif now - last_sent >= HEARTBEAT_SECONDS:
            last_sent = now
            yield ": keep-alive\n\n"
        if current["terminal"]:
            yield _event("end", {"state": current["state"]})
            return
        if now - started >= max_seconds:
            return
        time.sleep(interval)

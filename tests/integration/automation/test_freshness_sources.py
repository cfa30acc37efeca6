"""Freshness of a URL (a real HTTP server on 127.0.0.1) and of a memory collection."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from agent33.automation import sensor_tick
from agent33.automation.sensors import create_sensor
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import MemoryCollection, MemoryDocument, Sensor
from tests.integration.automation.helpers import ON_FILE, runs_by
from tests.integration.engine.helpers import save

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db")]
INPUTS = {"path": "{{ event.source }}", "change": "{{ event.type }}"}


class Feed:
    """What the fake server answers: HEAD status, GET status, Last-Modified."""

    def __init__(self) -> None:
        self.head = 200
        self.get = 200
        self.modified: dt.datetime | None = None
        self.methods: list[str] = []


@pytest.fixture
def feed() -> Iterator[tuple[Feed, str]]:
    state = Feed()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int) -> None:
            state.methods.append(self.command)
            self.send_response(status)
            if state.modified is not None:
                self.send_header("Last-Modified", format_datetime(state.modified, usegmt=True))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(state.head)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(state.get)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()


def _create(settings: Settings, name: str, **source: Any) -> None:
    save(ON_FILE)
    spec = {"name": name, "kind": "freshness", "workflow": "on_file", "max_age": 60.0}
    spec.update(enabled=True, interval=0.0, inputs=INPUTS, **source)
    with session_scope() as session:
        create_sensor(session=session, settings=settings, spec=spec)


def _last_error(name: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Sensor.last_error).where(Sensor.name == name))


def test_a_stale_url_fires_once_and_head_falls_back_to_get(
    settings: Settings, feed: tuple[Feed, str]
) -> None:
    state, url = feed
    now = dt.datetime.now(dt.UTC)
    state.modified = now - dt.timedelta(hours=2)
    _create(settings, "feed", url=url)
    assert sensor_tick.tick(settings).fired == 1
    assert sensor_tick.tick(settings).fired == 0
    [run] = runs_by("feed")
    assert run.inputs == {"path": url, "change": "stale"}

    state.modified = now
    assert sensor_tick.tick(settings).fired == 0  # fresh: the episode ends
    state.head, state.modified = 405, now - dt.timedelta(hours=1)
    state.methods.clear()
    assert sensor_tick.tick(settings).fired == 1
    assert state.methods == ["HEAD", "GET"]

    state.head = 500
    assert sensor_tick.tick(settings).failed == 1
    assert _last_error("feed") == f"{url} answered 500"
    state.head, state.modified = 200, None
    sensor_tick.tick(settings)
    assert _last_error("feed") == f"{url} sent no Last-Modified header"
    assert len(runs_by("feed")) == 2


def test_a_memory_collection_is_stale_when_its_newest_document_is_old(
    settings: Settings,
) -> None:
    with session_scope() as session:
        collection = MemoryCollection(name="kb", embedding_model="local/x", dimension=384)
        session.add(collection)
        session.flush()
        collection_id = collection.id
    _create(settings, "kb-fresh", collection="kb")
    assert sensor_tick.tick(settings).fired == 1  # empty: stale
    assert runs_by("kb-fresh")[0].trigger["event"]["modified"] is None

    with session_scope() as session:
        session.add(MemoryDocument(collection_id=collection_id, key="a", content_hash="0" * 64))
    assert sensor_tick.tick(settings).fired == 0  # a new document: fresh
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with session_scope() as session:
        session.execute(update(MemoryDocument).values(updated_at=old))
    assert sensor_tick.tick(settings).fired == 1
    assert sensor_tick.tick(settings).fired == 0
    assert len(runs_by("kb-fresh")) == 2

    _create(settings, "nowhere", collection="missing")
    assert sensor_tick.tick(settings).failed == 1
    assert _last_error("nowhere") == "memory collection 'missing' does not exist"

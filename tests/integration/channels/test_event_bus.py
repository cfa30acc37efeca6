"""The event bus on a real Redis: at-least-once delivery through consumer groups (a consumer
killed mid-event gets it again), a bounded stream, and the engine's run events on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.eventbus import STREAM, Event, EventBus, consume

pytestmark = pytest.mark.messaging

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def conn(settings: Settings) -> Iterator[redis.Redis]:
    assert settings.redis_url is not None
    connection = redis.Redis.from_url(settings.redis_url)
    yield connection
    connection.close()


@pytest.fixture
def stream(conn: redis.Redis) -> Iterator[str]:
    name = f"agent33:test-events:{uuid.uuid4().hex[:8]}"
    yield name
    conn.delete(name)


def _crashing_consumer(redis_url: str, stream: str, marker: Path) -> subprocess.Popen[bytes]:
    """A consumer in its own process that takes one event and hangs in its handler."""
    code = textwrap.dedent(
        f"""
        import threading, time, pathlib, redis
        from agent33.eventbus import EventBus, consume
        bus = EventBus(redis.Redis.from_url({redis_url!r}), stream={stream!r})
        def handle(event):
            pathlib.Path({str(marker)!r}).write_text(event.id)
            time.sleep(600)  # killed here, before the ack
        consume(bus, "notifier", "worker-1", handle, stop=threading.Event())
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


@pytest.mark.fault
def test_a_consumer_killed_mid_event_gets_it_again_after_restart(
    settings: Settings, conn: redis.Redis, stream: str, tmp_path: Path
) -> None:
    assert settings.redis_url is not None
    bus = EventBus(conn, stream=stream)
    bus.subscribe("notifier")
    process = _crashing_consumer(settings.redis_url, stream, tmp_path / "took")
    try:
        published = bus.publish("run.waiting", {"run_id": "r1"})
        assert _wait_for(tmp_path / "took") == published
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert bus.pending("notifier") == 1  # taken, never acknowledged

    handled: list[Event] = []
    stop = threading.Event()

    def handle(event: Event) -> None:
        handled.append(event)
        stop.set()

    consume(bus, "notifier", "worker-1", handle, stop=stop)  # the restarted consumer
    assert [(e.id, e.type, e.data) for e in handled] == [
        (published, "run.waiting", {"run_id": "r1"})
    ]
    assert bus.pending("notifier") == 0


def test_another_consumer_reclaims_an_idle_pending_event(conn: redis.Redis, stream: str) -> None:
    bus = EventBus(conn, stream=stream)
    bus.subscribe("notifier")
    published = bus.publish("alert.fired", {"name": "disk"})
    (taken,) = bus.read("notifier", "worker-1", block_ms=100)
    assert taken.id == published
    assert bus.read("notifier", "worker-2", block_ms=100, reclaim_idle_ms=60_000) == []
    time.sleep(0.2)
    (reclaimed,) = bus.read("notifier", "worker-2", block_ms=100, reclaim_idle_ms=100)
    assert reclaimed.id == published
    bus.ack("notifier", reclaimed.id)
    assert bus.pending("notifier") == 0


def test_every_group_sees_every_event_and_a_failed_handler_keeps_it(
    conn: redis.Redis, stream: str
) -> None:
    bus = EventBus(conn, stream=stream)
    for group in ("dashboard", "channels"):
        bus.subscribe(group)
    published = bus.publish("run.succeeded", {"run_id": "r2"})

    def fail(event: Event) -> None:
        raise RuntimeError("telegram is down")

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    consume(bus, "channels", "c1", fail, stop=stop, block_ms=100)
    assert bus.pending("channels") == 1
    assert [e.id for e in bus.read("dashboard", "d1", block_ms=100)] == [published]


def test_the_stream_is_bounded(conn: redis.Redis, stream: str) -> None:
    bus = EventBus(conn, stream=stream, maxlen=100)
    for number in range(1500):
        bus.publish("step.failed", {"n": number})
    assert 100 <= int(conn.xlen(stream)) < 400


@pytest.mark.usefixtures("stored_workflows", "celery_worker")
def test_the_engine_publishes_run_events(
    conn: redis.Redis, client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    bus = EventBus(conn, stream=STREAM)
    group = f"test-{uuid.uuid4().hex[:8]}"
    bus.subscribe(group)
    response = client.post(
        "/api/v1/workflows/demo_greeting/runs",
        json={"inputs": {"name": "ada"}},
        headers=admin_headers,
    )
    assert response.status_code == 202, response.get_json()
    run_id = response.get_json()["id"]
    deadline = time.monotonic() + 20
    seen: list[Event] = []
    while time.monotonic() < deadline:
        seen += bus.read(group, "t1", block_ms=200)
        if any(e.type == "run.succeeded" and e.data["run_id"] == run_id for e in seen):
            break
    mine = [e for e in seen if e.data.get("run_id") == run_id]
    assert [e.type for e in mine] == ["run.succeeded"]
    assert mine[0].data["workflow"] == "demo_greeting" and mine[0].data["state"] == "succeeded"
    conn.xgroup_destroy(STREAM, group)

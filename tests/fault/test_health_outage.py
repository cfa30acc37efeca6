"""Stopping a real server: `/health` turns 503 naming it within 2 s, and recovers after restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent33.config import Settings
from agent33.embedded import ManagedServer, start_postgres, start_redis
from web import create_app

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("committed_db")]


def _health_after_stopping(server: ManagedServer, own: Settings) -> Any:
    """/health is green with `server` up; stop it and return the next answer, timed."""
    client = create_app(own).test_client()
    assert client.get("/health").status_code == 200
    server.stop()
    started = time.monotonic()
    response = client.get("/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 2.0, f"/health took {elapsed:.2f}s"
    return response.get_json()


def test_stopped_redis_is_named_within_two_seconds(settings: Settings, tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", durable=False)
    try:
        own = settings.replace(redis_url=server.url, health_optional=("ollama", "workers", "model"))
        body = _health_after_stopping(server, own)
        assert body["status"] == "degraded"
        assert {"broker", "result_backend"} <= set(body["down"])
        assert body["services"]["database"]["status"] == "up"
    finally:
        server.stop()


def test_stopped_postgres_is_named_within_two_seconds(settings: Settings, tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg", durable=False)
    try:
        own = settings.replace(
            database_url=server.url, health_optional=("ollama", "workers", "model")
        )
        assert _health_after_stopping(server, own)["down"] == ["database"]
    finally:
        server.stop()
        from agent33 import db

        db.configure(settings)

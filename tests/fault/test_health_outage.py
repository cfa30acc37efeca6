"""Stopping a real server: `/health` turns 503 naming it within 2 s, and recovers after restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent33.config import Settings
from agent33.embedded import start_redis
from web import create_app

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("committed_db")]


def test_stopped_redis_is_named_within_two_seconds(settings: Settings, tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", durable=False)
    try:
        own = settings.replace(redis_url=server.url, health_optional=("ollama", "workers"))
        client = create_app(own).test_client()
        assert client.get("/health").status_code == 200
        server.stop()
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
        body = response.get_json()
        assert response.status_code == 503
        assert elapsed < 2.0, f"/health took {elapsed:.2f}s"
        assert body["status"] == "degraded"
        assert {"broker", "result_backend"} <= set(body["down"])
        assert body["services"]["database"]["status"] == "up"
    finally:
        server.stop()


def test_stopped_postgres_is_named_within_two_seconds(settings: Settings, tmp_path: Path) -> None:
    from agent33.embedded import start_postgres

    server = start_postgres(tmp_path / "pg", durable=False)
    try:
        own = settings.replace(database_url=server.url, health_optional=("ollama", "workers"))
        client = create_app(own).test_client()
        assert client.get("/health").status_code == 200
        server.stop()
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert elapsed < 2.0, f"/health took {elapsed:.2f}s"
        assert response.get_json()["down"] == ["database"]
    finally:
        server.stop()
        from agent33 import db

        db.configure(settings)

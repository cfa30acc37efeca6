"""`/health` reports every service, fails only on required ones, and never outlives its deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent33.config import Settings
from web import create_app
from web.api.health import run_checks

SERVICES = {"database", "broker", "result_backend", "ollama", "model", "workers"}
DEAD_REDIS = "redis://127.0.0.1:1/0"


def _get_health(settings: Settings) -> tuple[Any, float]:
    client = create_app(settings).test_client()
    started = time.monotonic()
    response = client.get("/health")
    return response, time.monotonic() - started


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a black-holed Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.mark.usefixtures("celery_worker")
def test_all_up_is_200_listing_every_service(settings: Settings, fake_ollama: Any) -> None:
    response, _ = _get_health(settings.replace(ollama_base_url=fake_ollama.url))
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "healthy"
    assert "down" not in body
    assert set(body["services"]) == SERVICES
    for name, service in body["services"].items():
        assert service["status"] == "up", (name, service)
        assert service["latency_ms"] >= 0
    assert body["services"]["workers"]["count"] >= 1
    assert body["services"]["ollama"] == {**body["services"]["ollama"], "required": False}
    assert ("/api/tags", {}) in fake_ollama.requests
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("celery_worker")
def test_optional_ollama_down_is_reported_but_not_failing(settings: Settings) -> None:
    no_model = settings.replace(
        ollama_base_url="http://127.0.0.1:9", health_optional=("ollama", "model")
    )
    response, _ = _get_health(no_model)
    body = response.get_json()
    assert response.status_code == 200, body
    ollama = body["services"]["ollama"]
    assert ollama["status"] == "down"
    assert ollama["required"] is False
    assert ollama["error"]


def test_ollama_is_required_when_not_listed_optional(settings: Settings, fake_ollama: Any) -> None:
    fake_ollama.mode = "503"
    response, _ = _get_health(settings.replace(ollama_base_url=fake_ollama.url, health_optional=()))
    body = response.get_json()
    assert response.status_code == 503
    assert "ollama" in body["down"]
    assert body["services"]["ollama"]["required"] is True


def test_dead_redis_is_503_naming_the_broker_within_two_seconds(settings: Settings) -> None:
    dead = settings.replace(redis_url=DEAD_REDIS, broker_url=DEAD_REDIS, result_backend=DEAD_REDIS)
    response, elapsed = _get_health(dead)
    body = response.get_json()
    assert elapsed < 2.0
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert {"broker", "result_backend", "workers"} <= set(body["down"])
    assert "database" not in body["down"]
    assert body["services"]["broker"]["status"] == "down"
    assert body["services"]["database"]["status"] == "up"


def test_black_holed_broker_cannot_hang_the_probe(settings: Settings, silent_server: str) -> None:
    silent = settings.replace(redis_url=silent_server, broker_url=None, result_backend=None)
    response, elapsed = _get_health(silent)
    body = response.get_json()
    assert elapsed < 2.0
    assert response.status_code == 503
    assert "broker" in body["down"]
    assert "workers" in body["down"]


def test_a_check_past_the_deadline_is_reported_as_a_timeout(settings: Settings) -> None:
    def slow(_: Settings) -> dict[str, Any]:
        time.sleep(2.0)
        return {}

    def quick(_: Settings) -> dict[str, Any]:
        return {}

    started = time.monotonic()
    report = run_checks(settings.replace(health_timeout=0.3), {"slow": slow, "quick": quick})
    assert time.monotonic() - started < 1.0
    assert report["services"]["slow"] == {
        "status": "down",
        "error": "timeout after 0.3s",
        "required": True,
    }
    assert report["services"]["quick"]["status"] == "up"
    assert report["down"] == ["slow"]

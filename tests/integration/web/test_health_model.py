"""`/health` lists the model server: up naming the one that answers (the embedded local model
first), or down with every server tried, which makes the system `degraded`."""

from __future__ import annotations

from typing import Any

from agent33.config import Settings
from web import create_app


def _health(settings: Settings) -> tuple[int, dict[str, Any]]:
    response = create_app(settings).test_client().get("/health")
    return response.status_code, response.get_json()


def test_no_model_at_all_is_degraded_with_the_reason(settings: Settings) -> None:
    status, body = _health(settings.replace(ollama_base_url="http://127.0.0.1:9"))
    assert status == 503 and body["status"] == "degraded"
    assert "model" in body["down"]
    model = body["services"]["model"]
    assert model["status"] == "down" and model["required"] is True
    assert "no model can answer" in model["error"]
    assert "ollama at http://127.0.0.1:9" in model["error"]


def test_the_local_model_server_is_listed_when_it_answers(
    settings: Settings, fake_openai: Any
) -> None:
    local = settings.replace(
        ollama_base_url="http://127.0.0.1:9", local_model_url=f"{fake_openai.url}/v1"
    )
    _, body = _health(local)
    model = body["services"]["model"]
    assert model["status"] == "up", model
    assert model["server"] == f"local at {fake_openai.url}/v1"
    assert "model" not in body.get("down", [])


def test_a_configured_openai_compatible_server_counts(settings: Settings, fake_openai: Any) -> None:
    fake_openai.api_key = "sk-test"
    remote = settings.replace(
        ollama_base_url="http://127.0.0.1:9",
        openai_base_url=fake_openai.url,
        openai_api_key="sk-test",
    )
    _, body = _health(remote)
    assert body["services"]["model"] == {
        **body["services"]["model"],
        "status": "up",
        "server": f"openai at {fake_openai.url}",
    }

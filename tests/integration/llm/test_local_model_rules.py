"""When `serve` starts the local model, and what the default model means while it runs
(no llama.cpp needed: the decisions and the routing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent33.config import Settings
from agent33.llm import local_model
from agent33.llm.router import default_router, stand_in

DEAD = "http://127.0.0.1:9"


def test_off_and_an_existing_url_never_start_it(settings: Settings) -> None:
    assert local_model.start_decision(settings.replace(local_model="off")) == (
        False,
        "AGENT33_LOCAL_MODEL=off",
    )
    started, reason = local_model.start_decision(settings.replace(local_model_url=f"{DEAD}/v1"))
    assert not started and "AGENT33_LOCAL_MODEL_URL is set" in reason


def test_a_running_ollama_keeps_it_off(settings: Settings, fake_ollama: Any) -> None:
    started, reason = local_model.start_decision(settings.replace(ollama_base_url=fake_ollama.url))
    assert not started
    assert reason == f"ollama at {fake_ollama.url} answers"


def test_a_configured_openai_server_keeps_it_off(settings: Settings, fake_openai: Any) -> None:
    remote = settings.replace(ollama_base_url=DEAD, openai_base_url=f"{fake_openai.url}/v1")
    assert local_model.start_decision(remote)[0] is False


def test_nothing_answering_starts_it_naming_what_was_tried(settings: Settings) -> None:
    started, reason = local_model.start_decision(settings.replace(ollama_base_url=DEAD))
    assert reason.startswith(f"no model server answers (ollama at {DEAD}: connection refused)")
    missing = local_model.runtime_missing()
    assert started is (missing is None)
    if missing:
        assert "pip install -e '.[local-model]'" in reason


def test_a_missing_gguf_path_is_refused_naming_the_variable(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(local_model.LocalModelError, match="AGENT33_LOCAL_MODEL: .* not a file"):
        local_model.model_file(settings.replace(local_model=str(tmp_path / "nope.gguf")))


@pytest.mark.parametrize("model", ["", "llama3.2", "llama3.2:latest", "ollama/llama3.2"])
def test_the_default_model_resolves_to_the_local_model_while_it_runs(
    settings: Settings, model: str
) -> None:
    running = settings.replace(local_model_url=f"{DEAD}/v1")
    assert stand_in(running, model) == "local/smollm2"
    router = default_router(running)
    provider, name = router.resolve(model)
    assert (getattr(provider, "name", ""), name) == ("local", "smollm2")
    assert stand_in(settings, model) == model  # not running: routes as written


def test_other_models_route_as_written_while_it_runs(settings: Settings) -> None:
    router = default_router(settings.replace(local_model_url=f"{DEAD}/v1"))
    assert router.canonical("openai/gpt-4o-mini") == "openai/gpt-4o-mini"
    assert router.canonical("qwen2.5") == "ollama/qwen2.5"

"""OllamaProvider against FakeOllama over real HTTP: answers, streams, tools, unknown models
(faults common to both providers: test_providers.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from agent33.llm import (
    ChatRequest,
    Message,
    ModelNotFound,
    OllamaProvider,
    Options,
    ToolCall,
    ToolSpec,
)
from tests.plugins.fakes import FakeOllama

READ_TIMEOUT = 0.5
WEATHER = ToolSpec(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest("llama3.2", [Message("system", "be brief"), Message("user", text)], **kw)


@pytest.fixture
def provider(fake_ollama: FakeOllama) -> Iterator[OllamaProvider]:
    p = OllamaProvider(
        fake_ollama.url,
        default_model="llama3.2",
        connect_timeout=1.0,
        read_timeout=READ_TIMEOUT,
        retries=2,
        backoff=0.01,
    )
    yield p
    p.close()


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


def test_chat_returns_the_answer_with_usage_and_latency(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script("The sky is blue.")
    response = provider.chat(ask("why is the sky blue"))
    assert response.content == "The sky is blue."
    assert response.finish_reason == "stop"
    assert (response.provider, response.model) == ("ollama", "llama3.2")
    # prompt: "be brief" (2) + "why is the sky blue" (5); completion: 4 word pieces
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 4)
    assert response.usage.total_tokens == 11
    assert response.latency_ms == pytest.approx((1 + 7) * 1.0 + 4 * 20.0)  # total_duration in ns
    [body] = chat_bodies(fake_ollama)
    assert body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "why is the sky blue"},
    ]


def test_unscripted_reply_echoes_the_last_user_message(provider: OllamaProvider) -> None:
    assert provider.chat(ask("ping")).content == "echo: ping"


def test_stream_yields_deltas_then_one_final_chunk_with_usage(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script("one two three")
    chunks = list(provider.stream(ask()))
    assert [c.delta for c in chunks[:-1]] == ["one", " two", " three"]
    assert [c.done for c in chunks] == [False, False, False, True]
    final = chunks[-1].response
    assert final is not None
    assert final.content == "one two three"
    assert final.usage.completion_tokens == 3 and final.usage.prompt_tokens == 4
    assert chat_bodies(fake_ollama)[0]["stream"] is True


def test_streamed_lines_match_the_documented_wire_format(fake_ollama: FakeOllama) -> None:
    """The fake itself, checked once against shared/OLLAMA-API.md's `/api/chat` shapes."""
    fake_ollama.script("Hi there")
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    with requests.post(f"{fake_ollama.url}/api/chat", json=body, stream=True, timeout=5) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert r.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    *chunks, final = lines
    for chunk in chunks:
        assert set(chunk) == {"model", "created_at", "message", "done"}
        assert chunk["done"] is False and chunk["model"] == "llama3.2"
        assert chunk["message"]["role"] == "assistant"
        datetime.fromisoformat(chunk["created_at"])
    assert "".join(c["message"]["content"] for c in chunks) == "Hi there"
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["message"] == {"role": "assistant", "content": ""}
    metrics = ("total_duration", "load_duration", "prompt_eval_count", "eval_count")
    for name in (*metrics, "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[name], int) and final[name] > 0, name
    plain = requests.post(f"{fake_ollama.url}/api/chat", json={**body, "stream": False}, timeout=5)
    assert plain.headers["Content-Type"] == "application/json"
    assert plain.json()["done"] is True and plain.json()["message"]["content"] == "echo: hi"


def test_tool_calls_are_parsed_with_generated_ids(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Tokyo"}}])
    fake_ollama.script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    plain = provider.chat(ask("weather?", tools=[WEATHER]))
    streamed = provider.chat(ask("weather?", tools=[WEATHER], stream=True))
    for response, city in ((plain, "Tokyo"), (streamed, "Oslo")):
        [call] = response.tool_calls
        assert (call.name, call.arguments) == ("get_weather", {"city": city})
        assert call.id.startswith("call_")
        assert response.finish_reason == "tool_calls"
    assert chat_bodies(fake_ollama)[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]


def test_tool_results_are_sent_back_in_ollama_shape(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    call = ToolCall("call_1", "get_weather", {"city": "Tokyo"})
    history = [
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "18C", tool_call_id="call_1", name="get_weather"),
    ]
    provider.chat(ChatRequest("llama3.2", history))
    sent = chat_bodies(fake_ollama)[0]["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    ]
    assert sent[2] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}


def test_response_format_and_options_are_forwarded(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    options = Options(temperature=0.1, max_tokens=2, seed=7, stop=("\n",), extra={"num_ctx": 4096})
    fake_ollama.script("one two three four")
    cut = provider.chat(ask(response_format=schema, options=options))
    provider.chat(ask(response_format="json"))
    first, second = chat_bodies(fake_ollama)
    assert first["format"] == schema and second["format"] == "json"
    assert first["options"] == {
        "temperature": 0.1,
        "num_predict": 2,
        "seed": 7,
        "stop": ["\n"],
        "num_ctx": 4096,
    }
    assert "options" not in second
    assert (cut.content, cut.finish_reason) == ("one two", "length")


def test_embed_returns_normalised_deterministic_vectors(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    first = provider.embed(["alpha", "beta"], dimensions=8)
    again = provider.embed(["alpha"], "nomic-embed-text", dimensions=8)
    assert len(first) == 2 and all(len(v) == 8 for v in first)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in first)
    assert again[0] == first[0] and first[0] != first[1]
    assert ("/api/embed", {"model": "nomic-embed-text", "input": ["alpha"], "dimensions": 8}) in (
        fake_ollama.requests
    )
    assert provider.embed([]) == []


def test_list_models_and_health(provider: OllamaProvider, fake_ollama: FakeOllama) -> None:
    assert provider.list_models() == ["llama3.2:latest", "nomic-embed-text:latest"]
    assert provider.health() is True
    fake_ollama.mode = "503"
    assert provider.health() is False


def test_unknown_model_is_model_not_found_naming_model_provider_and_url(
    provider: OllamaProvider, fake_ollama: FakeOllama
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        provider.chat(ChatRequest("mistral", [Message("user", "hi")]))
    assert str(caught.value) == f"model 'mistral' not found on ollama at {fake_ollama.url}"
    assert caught.value.retryable is False
    assert len(fake_ollama.requests) == 1  # not retried

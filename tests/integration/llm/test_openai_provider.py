"""OpenAICompatProvider against FakeOpenAI over real HTTP: JSON, SSE streams, tools, 401 and 429
(faults common to both providers: test_providers.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from agent33.llm import (
    ChatRequest,
    Message,
    ModelNotFound,
    OpenAICompatProvider,
    Options,
    ProviderError,
    RateLimited,
    ToolCall,
    ToolSpec,
    normalise_base_url,
)
from tests.plugins.fakes import FakeOpenAI

KEY = "sk-test-123"
READ_TIMEOUT = 0.5
WEATHER = ToolSpec("get_weather", "Weather", {"type": "object", "properties": {}})


def ask(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest("gpt-4o-mini", [Message("user", text)], **kw)


@pytest.fixture
def provider(fake_openai: FakeOpenAI) -> Iterator[OpenAICompatProvider]:
    fake_openai.api_key = KEY
    p = OpenAICompatProvider(
        fake_openai.url, KEY, connect_timeout=1.0, read_timeout=READ_TIMEOUT, backoff=0.01
    )
    yield p
    p.close()


def chat_bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/v1/chat/completions"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
        ("https://g.example/v1beta/openai/", "https://g.example/v1beta/openai"),
    ],
)
def test_base_url_is_normalised_to_a_versioned_root(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
def test_chat_works_with_or_without_v1_and_sends_the_key(
    fake_openai: FakeOpenAI, suffix: str
) -> None:
    fake_openai.api_key = KEY
    provider = OpenAICompatProvider(fake_openai.url + suffix, KEY)
    fake_openai.script("Blue, mostly.")
    response = provider.chat(ask("why is the sky blue"))
    assert (response.content, response.finish_reason) == ("Blue, mostly.", "stop")
    assert (response.provider, response.model) == ("openai", "gpt-4o-mini")
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 2)
    assert response.latency_ms > 0
    assert fake_openai.headers[-1]["Authorization"] == f"Bearer {KEY}"
    assert chat_bodies(fake_openai)[0]["messages"] == [
        {"role": "user", "content": "why is the sky blue"}
    ]


def test_stream_asks_for_usage_and_ends_with_it(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script("one two three")
    chunks = list(provider.stream(ask()))
    assert [c.delta for c in chunks if not c.done] == ["one", " two", " three"]
    assert [c.done for c in chunks].count(True) == 1 and chunks[-1].done
    final = chunks[-1].response
    assert final is not None and final.content == "one two three"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (2, 3)
    body = chat_bodies(fake_openai)[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_sse_wire_shape_of_the_fake(fake_openai: FakeOpenAI) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"{fake_openai.url}/v1/chat/completions"
    with requests.post(url, json=body, stream=True, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith(b"data: ") for e in events) and events[-1] == b"data: [DONE]"
    *chunks, usage = [json.loads(e[6:]) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_arguments_are_parsed_from_json_strings(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI, stream: bool
) -> None:
    fake_openai.script(
        tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "C"}},
            {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}},
        ]
    )
    response = provider.chat(ask("weather and time?", tools=[WEATHER], stream=stream))
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Tokyo", "unit": "C"}),
        ("get_time", {"zone": "Asia/Tokyo"}),
    ]
    assert all(c.id.startswith("call_") for c in response.tool_calls)
    assert response.finish_reason == "tool_calls" and response.content == ""
    assert chat_bodies(fake_openai)[0]["tools"] == [WEATHER.as_function()]


def test_tool_history_is_sent_in_openai_shape(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI
) -> None:
    call = ToolCall("call_1", "get_weather", {"city": "Tokyo"})
    provider.chat(
        ChatRequest(
            "gpt-4o-mini",
            [
                Message("user", "weather?"),
                Message("assistant", "", tool_calls=(call,)),
                Message("tool", "18C", tool_call_id="call_1"),
            ],
        )
    )
    sent = chat_bodies(fake_openai)[0]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


def test_response_format_and_options_are_forwarded(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI
) -> None:
    schema = {"title": "Answer v1", "type": "object", "properties": {}}
    fake_openai.script("one two three")
    cut = provider.chat(ask(response_format=schema, options=Options(max_tokens=2, seed=3)))
    provider.chat(ask(response_format="json", options=Options(stop=("END",))))
    first, second = chat_bodies(fake_openai)
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Answer_v1", "schema": schema},
    }
    assert (first["max_tokens"], first["seed"]) == (2, 3)
    assert second["response_format"] == {"type": "json_object"} and second["stop"] == ["END"]
    assert (cut.content, cut.finish_reason) == ("one two", "length")


def test_embed_and_list_models(provider: OpenAICompatProvider, fake_openai: FakeOpenAI) -> None:
    vectors = provider.embed(["a", "b", "c"], dimensions=5)
    assert len(vectors) == 3 and all(len(v) == 5 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert fake_openai.requests[-1] == (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": ["a", "b", "c"], "dimensions": 5},
    )
    assert provider.list_models() == ["gpt-4o-mini", "text-embedding-3-small"]
    assert provider.health() is True


def test_unknown_model_is_model_not_found(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI
) -> None:
    with pytest.raises(ModelNotFound) as caught:
        provider.chat(ChatRequest("gpt-9", [Message("user", "hi")]))
    assert str(caught.value) == f"model 'gpt-9' not found on openai at {fake_openai.url}/v1"


def test_bad_key_is_a_non_retryable_provider_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.api_key = KEY
    provider = OpenAICompatProvider(fake_openai.url, "wrong", backoff=0.01)
    with pytest.raises(ProviderError, match="HTTP 401") as caught:
        provider.chat(ask())
    assert caught.value.retryable is False and not isinstance(caught.value, ModelNotFound)
    assert len(fake_openai.requests) == 1
    assert provider.health() is False


@pytest.mark.parametrize("stream", [False, True])
def test_429_is_rate_limited_with_retry_after_and_not_retried_here(
    provider: OpenAICompatProvider, fake_openai: FakeOpenAI, stream: bool
) -> None:
    fake_openai.mode = "429"
    with pytest.raises(RateLimited) as caught:
        provider.chat(ask(stream=stream))
    assert caught.value.retry_after == 1.0 and caught.value.retryable
    assert len(fake_openai.requests) == 1

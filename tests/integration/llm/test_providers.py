"""What both providers must do alike, run against each fake: faults, cut streams, bad answers."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from agent33.llm import (
    ChatRequest,
    Message,
    OllamaProvider,
    OpenAICompatProvider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from tests.plugins.fakes import FakeOllama, FakeOpenAI

KEY = "sk-test-123"
READ_TIMEOUT = 0.5
Provider = OllamaProvider | OpenAICompatProvider


@dataclass
class Kind:
    """How to build one provider kind, and where its fake serves chat."""

    make: Callable[..., Provider]
    model: str
    chat_path: str
    suffix: str  # what the provider appends to the URL it is given


KINDS = {
    "ollama": Kind(
        lambda url, **kw: OllamaProvider(url, retries=2, **kw), "llama3.2", "/api/chat", ""
    ),
    "openai": Kind(
        lambda url, **kw: OpenAICompatProvider(url, KEY, **kw),
        "gpt-4o-mini",
        "/v1/chat/completions",
        "/v1",
    ),
}


@dataclass
class Served:
    kind: Kind
    provider: Provider
    fake: FakeOllama | FakeOpenAI

    def ask(self, text: str = "hello there", **kw: Any) -> ChatRequest:
        return ChatRequest(self.kind.model, [Message("user", text)], **kw)

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [body for path, body in self.fake.requests if path == self.kind.chat_path]

    def answer_with(self, monkeypatch: pytest.MonkeyPatch, route: str, payload: Any) -> None:
        """Make `route` ("GET /path") answer 200 with `payload`, whatever was asked."""
        method, path = route.split()
        routes = self.fake.routes

        def reply(h: Any, _body: Any, _mode: str) -> None:
            self.fake.send_json(h, 200, payload)

        def patched() -> dict[tuple[str, str], Any]:
            return {**routes(), (method, path): reply}

        monkeypatch.setattr(self.fake, "routes", patched)


@contextmanager
def serving(request: pytest.FixtureRequest, name: str) -> Iterator[Served]:
    """A provider of kind `name` against its fake (the `fake_<name>` fixture)."""
    fake = request.getfixturevalue(f"fake_{name}")
    if isinstance(fake, FakeOpenAI):
        fake.api_key = KEY
    kind = KINDS[name]
    provider = kind.make(fake.url, connect_timeout=1.0, read_timeout=READ_TIMEOUT, backoff=0.01)
    try:
        yield Served(kind, provider, fake)
    finally:
        provider.close()


@pytest.fixture(params=list(KINDS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    with serving(request, request.param) as served:
        yield served


@pytest.mark.parametrize("stream", [False, True])
def test_503_is_retried_then_unavailable(served: Served, stream: bool) -> None:
    served.fake.mode = "503"
    where = f"{served.provider.name} at {re.escape(served.fake.url + served.kind.suffix)}"
    with pytest.raises(ProviderUnavailable, match=rf"^{where} is unavailable") as caught:
        served.provider.chat(served.ask(stream=stream))
    assert caught.value.retryable is True and caught.value.status == 503
    assert served.fake.url in str(caught.value) and "503" in str(caught.value)
    assert len(served.chat_bodies()) == 3  # retries=2


@pytest.mark.parametrize("fault", ["503", "500", "drop-mid-stream"])
def test_one_transient_fault_is_absorbed_by_a_retry(served: Served, fault: str) -> None:
    served.fake.fail(fault)
    assert served.provider.chat(served.ask("again")).content == "echo: again"
    assert len(served.chat_bodies()) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_hang_times_out_within_the_read_timeout_without_retrying(
    served: Served, stream: bool
) -> None:
    served.fake.mode = "hang"
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="no response within 0.5s"):
        served.provider.chat(served.ask(stream=stream))
    assert READ_TIMEOUT * 0.9 <= time.monotonic() - started < READ_TIMEOUT + 0.4
    assert len(served.chat_bodies()) == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("error-mid-stream", "the stream failed mid-answer"),
        ("drop-mid-stream", "the connection dropped mid-response"),
        ("truncate", "the stream ended before"),
    ],
)
def test_a_stream_cut_after_its_first_chunk_raises_and_is_not_retried(
    served: Served, fault: str, reason: str
) -> None:
    served.fake.script("one two three")
    served.fake.mode = fault
    received = []
    with pytest.raises(ProviderUnavailable, match=reason):
        for chunk in served.provider.stream(served.ask()):
            received.append(chunk)
    assert [c.delta for c in received] == ["one"]
    assert not any(c.done for c in received)
    assert len(served.chat_bodies()) == 1


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("stream", [False, True])
def test_connection_refused_is_unavailable_naming_the_url_quickly(name: str, stream: bool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    kind = KINDS[name]
    provider = kind.make(url, backoff=0.01)
    request = ChatRequest(kind.model, [Message("user", "hi")])
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        if stream:
            next(provider.stream(request))
        else:
            provider.chat(request)
    assert time.monotonic() - started < 1.0
    assert str(caught.value) == f"{name} at {url}{kind.suffix} is unavailable: connection refused"


@pytest.mark.parametrize(
    ("name", "route", "payload", "call"),
    [
        ("ollama", "POST /api/chat", [1, 2], "chat"),
        ("ollama", "POST /api/chat", {"message": "hi", "done": True}, "chat"),
        ("ollama", "POST /api/chat", {"message": {}, "total_duration": "1s"}, "chat"),
        ("ollama", "POST /api/embed", {"embeddings": [5]}, "embed"),
        ("ollama", "GET /api/tags", {"models": [{"model": "llama3.2"}]}, "list_models"),
        ("openai", "POST /v1/chat/completions", [1, 2], "chat"),
        ("openai", "POST /v1/chat/completions", {"choices": ["hi"]}, "chat"),
        ("openai", "POST /v1/chat/completions", {"usage": {"prompt_tokens": "two"}}, "chat"),
        ("openai", "POST /v1/embeddings", {"data": [{"index": "first"}]}, "embed"),
        ("openai", "GET /v1/models", {"data": ["gpt-4o-mini"]}, "list_models"),
    ],
)
def test_a_malformed_answer_is_a_provider_error_not_a_traceback(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    route: str,
    payload: Any,
    call: str,
) -> None:
    with serving(request, name) as served:
        served.answer_with(monkeypatch, route, payload)
        calls: dict[str, Callable[[], object]] = {
            "chat": lambda: served.provider.chat(served.ask()),
            "embed": lambda: served.provider.embed(["alpha"]),
            "list_models": served.provider.list_models,
        }
        with pytest.raises(ProviderError, match="sent a malformed answer") as caught:
            calls[call]()
    assert caught.value.retryable is False
    assert len(served.fake.requests) == 1  # not retried

"""Router: name resolution, fallback order and its limits, GPU queues, per-model concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent33.config import Settings
from agent33.llm import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMError,
    Message,
    ModelNotFound,
    OllamaProvider,
    OpenAICompatProvider,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Router,
    Usage,
    default_router,
    route_call,
    router_for,
)
from agent33.wire import Queue
from tests.plugins.fakes import FakeOllama

SETTINGS = Settings(ollama_default_model="llama3.2")
REQUEST = ChatRequest("ollama/llama3.2", [Message("user", "hi")])


class Stub:
    """A provider that fails with `error` (if any) and records every request it saw."""

    def __init__(self, name: str, error: LLMError | None = None) -> None:
        self.name = name
        self.error = error
        self.seen: list[ChatRequest] = []

    def chat(self, request: ChatRequest) -> ChatResponse:
        self.seen.append(request)
        if self.error is not None:
            raise self.error
        usage = Usage(1, 1, 2)
        return ChatResponse("ok", (), "stop", usage, 1.0, request.model, "stub")

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        response = self.chat(request)
        yield ChatChunk("ok")
        yield ChatChunk("", True, response)

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, dimensions: int | None = None
    ) -> list[list[float]]:
        return [[1.0] for _ in texts]

    def list_models(self) -> list[str]:
        return []

    def health(self) -> bool:
        return True


def router(**providers: Stub) -> Router:
    return Router(SETTINGS, providers)


def test_resolve_by_prefix_plain_name_and_default() -> None:
    ollama, openai = Stub("ollama"), Stub("openai")
    r = router(ollama=ollama, openai=openai)
    assert r.resolve("ollama/llama3.2") == (ollama, "llama3.2")
    assert r.resolve("openai/gpt-4o-mini") == (openai, "gpt-4o-mini")
    assert r.resolve("qwen2.5:7b") == (ollama, "qwen2.5:7b")
    assert r.resolve("hf.co/org/model") == (ollama, "hf.co/org/model")  # unknown prefix
    assert r.resolve("") == (ollama, "llama3.2")  # OLLAMA_DEFAULT_MODEL


def test_default_router_builds_both_providers_from_settings() -> None:
    settings = SETTINGS.replace(
        ollama_base_url="http://gpu-box:11434", openai_base_url="http://vllm:8000"
    )
    r = default_router(settings)
    ollama, name = r.resolve("llama3.2")
    openai, _ = r.resolve("openai/gpt-4o-mini")
    assert isinstance(ollama, OllamaProvider) and ollama.base_url == "http://gpu-box:11434"
    assert isinstance(openai, OpenAICompatProvider) and openai.base_url == "http://vllm:8000/v1"
    assert name == "llama3.2"


def test_fallbacks_are_tried_in_order_with_the_same_messages() -> None:
    busy = Stub("ollama", ProviderUnavailable("ollama at http://o is unavailable: busy"))
    limited = Stub("openai", RateLimited("openai at http://a is rate limiting"))
    spare = Stub("spare")
    r = router(ollama=busy, openai=limited, spare=spare)
    response = r.chat(REQUEST, fallbacks=["openai/gpt-4o-mini", "spare/tiny", "openai/never"])
    assert (response.provider, response.model) == ("spare", "tiny")
    assert [s.seen[0].model for s in (busy, limited, spare)] == ["llama3.2", "gpt-4o-mini", "tiny"]
    assert all(s.seen[0].messages == REQUEST.messages for s in (busy, limited, spare))
    assert len(limited.seen) == 1  # "openai/never" was not needed


@pytest.mark.parametrize(
    "error", [ProviderError("ollama at http://o refused"), ModelNotFound("model 'x' not found")]
)
def test_no_fallback_on_a_rejected_request(error: LLMError) -> None:
    spare = Stub("openai")
    r = router(ollama=Stub("ollama", error), openai=spare)
    with pytest.raises(type(error)):
        r.chat(REQUEST, fallbacks=["openai/gpt-4o-mini"])
    assert spare.seen == []


def test_when_all_fail_the_last_error_names_every_model_tried() -> None:
    first = ProviderUnavailable("ollama at http://o is unavailable: connection refused")
    last = RateLimited("openai at http://a is rate limiting", retry_after=3.0)
    r = router(ollama=Stub("ollama", first), openai=Stub("openai", last))
    with pytest.raises(RateLimited) as caught:
        r.chat(REQUEST, fallbacks=["openai/gpt-4o-mini"])
    message = str(caught.value)
    assert "ollama/llama3.2: ollama at http://o" in message
    assert "openai/gpt-4o-mini: openai at http://a" in message
    assert caught.value.retry_after == 3.0 and caught.value.__cause__ is last


def test_stream_falls_back_before_the_first_chunk() -> None:
    r = router(ollama=Stub("ollama", ProviderUnavailable("down")), openai=Stub("openai"))
    chunks = list(r.stream(REQUEST, fallbacks=["openai/gpt-4o-mini"]))
    assert [c.delta for c in chunks] == ["ok", ""]
    assert chunks[-1].response is not None and chunks[-1].response.provider == "openai"


def test_route_call_tags_gpu_models_by_bare_or_prefixed_name() -> None:
    gpu = SETTINGS.replace(llm_gpu_models=("llama3.2", "ollama/qwen2.5:7b"))
    assert route_call(gpu, "ollama/llama3.2:latest").queue == "llm.gpu"
    assert route_call(gpu, "qwen2.5:7b").queue == Queue.LLM_GPU
    assert route_call(gpu, "openai/gpt-4o-mini").queue == "llm"
    assert route_call(gpu, "openai/llama3.2").queue == "llm"  # same name, another provider
    assert route_call(gpu, "mistral").queue == Queue.LLM
    assert route_call(gpu, "").queue == "llm.gpu"  # the default model, llama3.2
    assert route_call(SETTINGS, "llama3.2").queue == "llm"  # nothing tagged


def test_route_call_an_agents_own_queue_wins() -> None:
    gpu = SETTINGS.replace(llm_gpu_models=("llama3.2",))
    assert route_call(gpu, "llama3.2", queue="llm").queue == "llm"
    assert route_call(SETTINGS, "mistral", queue="llm.gpu").queue == "llm.gpu"
    assert route_call(gpu, "llama3.2", queue=None).queue == "llm.gpu"


def test_router_for_is_one_router_per_provider_configuration() -> None:
    first = router_for(SETTINGS.replace(ollama_base_url="http://one:11434"))
    assert router_for(SETTINGS.replace(ollama_base_url="http://one:11434")) is first
    assert router_for(SETTINGS.replace(ollama_base_url="http://two:11434")) is not first
    limited = SETTINGS.replace(ollama_base_url="http://one:11434", llm_concurrency={"x": 1})
    assert router_for(limited) is not first


def _run_parallel(router: Router, calls: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=calls) as pool:
        results = list(pool.map(lambda _: router.chat(REQUEST), range(calls)))
    assert all(r.content == "echo: hi" for r in results)
    return time.monotonic() - started


def test_concurrency_limit_bounds_parallel_calls_to_one_model(fake_ollama: FakeOllama) -> None:
    """Six calls to a server that takes 0.2 s each: unlimited they overlap (~0.2 s); with a
    limit of 2 they go in three waves (>= 0.6 s) and never more than 2 are in flight."""
    fake_ollama.latency = 0.2
    provider = OllamaProvider(fake_ollama.url)
    in_flight, peak, lock = 0, 0, threading.Lock()
    real_chat = provider.chat

    def counting_chat(request: ChatRequest) -> ChatResponse:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return real_chat(request)
        finally:
            with lock:
                in_flight -= 1

    provider.chat = counting_chat  # type: ignore[method-assign]
    unlimited = _run_parallel(Router(SETTINGS, {"ollama": provider}), 6)
    assert unlimited < 0.45 and peak == 6
    peak = 0
    limited = Router(SETTINGS, {"ollama": provider}, limits={"llama3.2": 2})
    elapsed = _run_parallel(limited, 6)
    assert elapsed >= 0.58 and peak == 2
    other = limited.chat(ChatRequest("ollama/llama3.2:latest", REQUEST.messages))
    assert other.content == "echo: hi"  # the semaphore was released each time


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Router(SETTINGS, {"ollama": Stub("ollama")}, limits={"llama3.2": 0})

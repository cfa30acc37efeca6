"""Model name -> provider, fallbacks across providers, and per-model concurrency limits.

Names are `provider/model` (`ollama/llama3.2`, `openai/gpt-4o-mini`); a name whose prefix is
not a registered provider (`llama3.2`, `hf.co/org/model`) goes to the default provider whole.

Limits here are in-process only (a `BoundedSemaphore` per model, shared by the threads of one
worker). Across processes and hosts the limit is the Celery queue's concurrency: the `llm` and
`llm.gpu` workers' `-c`; `route_call` is the one rule that picks the queue (and, when the GPU
queue is saturated, the remote model) of a model call, for workflow steps and chat alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import structlog

from agent33.config import Settings
from agent33.llm import hooks as call_hooks
from agent33.llm import local_model, overflow
from agent33.llm.observed import model_call
from agent33.llm.ollama import OllamaProvider
from agent33.llm.openai_compat import OpenAICompatProvider
from agent33.llm.provider import LLMError, Provider, ProviderUnavailable, RateLimited
from agent33.llm.types import ChatChunk, ChatRequest, ChatResponse
from agent33.wire import Queue

log = structlog.get_logger(__name__)
FALLBACK_ON = (ProviderUnavailable, RateLimited)
DEFAULT_PROVIDERS = ("ollama", "openai", local_model.LOCAL_PROVIDER)


def _bare(name: str) -> str:
    """Ollama's tag defaults to `latest`, so `llama3.2` and `llama3.2:latest` are one model."""
    return name.removesuffix(":latest")


def _split(model: str, providers: Sequence[str], default_provider: str) -> tuple[str, str]:
    """(provider key, the provider's model name): a known prefix, else the default provider."""
    prefix, slash, rest = model.partition("/")
    if slash and rest and prefix in providers:
        return prefix, rest
    return default_provider, model


def canonical_model(settings: Settings, model: str) -> str:
    """`provider/model` as the configured router names it (`llama3.2:latest` ->
    `ollama/llama3.2`; empty -> the default model), without building a router."""
    key, name = _split(model or settings.ollama_default_model, DEFAULT_PROVIDERS, "ollama")
    return f"{key}/{_bare(name)}"


def is_gpu_model(settings: Settings, model: str) -> bool:
    """Whether AGENT33_LLM_GPU_MODELS names `model` (bare or prefixed, with or without
    `:latest`)."""
    tagged = {canonical_model(settings, m) for m in settings.llm_gpu_models}
    return canonical_model(settings, model) in tagged


@dataclass(frozen=True)
class Route:
    """Where one model call runs and why: `route` is `local` (the agent's own model on its
    queue) or `remote` (the remote fallback on `llm`, because `llm.gpu` was saturated)."""

    queue: str
    model: str
    route: Literal["local", "remote"]
    reason: str

    def record(self) -> dict[str, str]:
        """The JSON form stored in run events, step outputs and chat answers."""
        return {
            "route": self.route,
            "reason": self.reason,
            "model": self.model,
            "queue": self.queue,
        }


def route_call(
    settings: Settings, model: str, *, queue: str | None = None, remote_fallback: str | None = None
) -> Route:
    """The queue and model of an agent's model call, for a workflow step and a chat turn alike.

    The agent's own `queue` wins; else `llm.gpu` for a GPU-tagged model; else `llm`. A call bound
    for `llm.gpu` with a remote fallback (the agent's, else AGENT33_LLM_REMOTE_FALLBACK) goes to
    that model on `llm` while `llm.gpu` is saturated (see `overflow.saturation`), rather than
    wait behind it. Redis is read only then, and when it cannot be read the call stays local.
    """
    local_queue = queue or (Queue.LLM_GPU if is_gpu_model(settings, model) else Queue.LLM).value
    local = partial(Route, local_queue, model, "local")
    if local_queue != Queue.LLM_GPU:
        return local(f"{local_queue} is not a GPU queue")
    remote = remote_fallback or settings.llm_remote_fallback
    if not remote:
        return local("no remote fallback")
    try:
        load = overflow.read_load(settings)
    except overflow.LoadError as exc:
        log.warning("llm.load_unreadable", model=model, error=str(exc))
        return local(f"{local_queue} load unreadable ({exc}): stays local")
    saturated = overflow.saturation(load, settings)
    if saturated is None:
        return local(overflow.describe(load))
    log.info("llm.overflow", model=model, remote=remote, reason=saturated)
    return Route(Queue.LLM.value, remote, "remote", saturated)


@contextmanager
def gpu_slot(settings: Settings, model: str) -> Iterator[None]:
    """Count a call to a GPU-tagged `model` as in flight on the GPU for the block."""
    if not is_gpu_model(settings, model):
        yield
        return
    with overflow.gpu_lease(settings):
        yield


class Router:
    """Routes a request to its provider; see the module docstring for names and limits."""

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, Provider] | None = None,
        *,
        default_provider: str = "ollama",
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.providers: dict[str, Provider] = dict(
            providers if providers is not None else _providers_from(settings)
        )
        if not self.providers:
            raise ValueError("Router needs at least one provider")
        if default_provider not in self.providers:
            default_provider = next(iter(self.providers))
        self.default_provider = default_provider
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        for model, limit in (limits or {}).items():
            if limit < 1:
                raise ValueError(f"concurrency limit for {model!r} must be at least 1")
            self._limits[self.canonical(model)] = threading.BoundedSemaphore(limit)

    def resolve(self, model: str) -> tuple[Provider, str]:
        """`ollama/llama3.2` -> (the ollama provider, "llama3.2"); empty -> the default model."""
        _, provider, name = self._route(model)
        return provider, name

    def canonical(self, model: str) -> str:
        """`provider/model`, the key used for limits, GPU tags and error messages."""
        key, _, name = self._route(model)
        return f"{key}/{_bare(name)}"

    def chat(self, request: ChatRequest, fallbacks: Sequence[str] = ()) -> ChatResponse:
        """Try `request.model`, then each fallback in order, on unavailable/rate-limited only:
        a rejected request (ProviderError) would be rejected by the next model too."""
        hooks = call_hooks.active()
        if hooks is None:
            return self._chat(request, fallbacks, None)
        return hooks.model(request, partial(self._chat, request, fallbacks, hooks))

    def _chat(
        self,
        request: ChatRequest,
        fallbacks: Sequence[str],
        hooks: call_hooks.CallHooks | None,
    ) -> ChatResponse:
        failures: list[tuple[str, LLMError]] = []
        for candidate in (request.model, *fallbacks):
            key, provider, name = self._route(candidate)
            send = partial(provider.chat, replace(request, model=name))
            try:
                with self._slot(key, name), model_call("chat", key, name) as call:
                    if hooks is not None:
                        response = hooks.attempt(f"{key}/{_bare(name)}", request, send)
                    else:
                        response = send()
                    call.response = response
            except FALLBACK_ON as exc:
                failures.append((f"{key}/{name}", exc))
                log.warning("llm.fallback", model=f"{key}/{name}", error=exc.message)
                continue
            return replace(response, provider=key)
        raise self._exhausted(failures)

    def stream(self, request: ChatRequest, fallbacks: Sequence[str] = ()) -> Iterator[ChatChunk]:
        """Like `chat`, but falls back only before the first chunk: once text has been
        yielded, switching models would splice two answers together."""
        failures: list[tuple[str, LLMError]] = []
        for candidate in (request.model, *fallbacks):
            key, provider, name = self._route(candidate)
            # Not the current span: the caller runs between chunks (a streamed HTTP answer).
            with self._slot(key, name), model_call("chat", key, name, current=False) as call:
                chunks = provider.stream(replace(request, model=name))
                try:
                    first = next(chunks)
                except FALLBACK_ON as exc:
                    call.failed = True
                    failures.append((f"{key}/{name}", exc))
                    log.warning("llm.fallback", model=f"{key}/{name}", error=exc.message)
                    continue
                except StopIteration:
                    raise ProviderUnavailable(f"{key} returned an empty stream") from None
                call.response = first.response
                yield _stamp(first, key)
                for chunk in chunks:
                    call.response = chunk.response or call.response
                    yield _stamp(chunk, key)
                return
        raise self._exhausted(failures)

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, dimensions: int | None = None
    ) -> list[list[float]]:
        """Embed with `model`, or with the default provider's embedding model."""
        if model is None:
            return self.providers[self.default_provider].embed(texts, dimensions=dimensions)
        key, provider, name = self._route(model)
        with self._slot(key, name), model_call("embeddings", key, name):
            return provider.embed(texts, name, dimensions=dimensions)

    def close(self) -> None:
        for provider in self.providers.values():
            close = getattr(provider, "close", None)
            if callable(close):
                close()

    def _route(self, model: str) -> tuple[str, Provider, str]:
        model = stand_in(self.settings, model or self.settings.ollama_default_model)
        key, name = _split(model, tuple(self.providers), self.default_provider)
        return key, self.providers[key], name

    def _slot(self, key: str, name: str) -> AbstractContextManager[object]:
        semaphore = self._limits.get(f"{key}/{_bare(name)}")
        return semaphore if semaphore is not None else nullcontext()

    @staticmethod
    def _exhausted(failures: list[tuple[str, LLMError]]) -> LLMError:
        tried = "; ".join(f"{model}: {error.message}" for model, error in failures)
        last = failures[-1][1]
        error = last.with_message(f"every model failed ({len(failures)} tried): {tried}")
        error.__cause__ = last
        return error


def _stamp(chunk: ChatChunk, key: str) -> ChatChunk:
    if chunk.response is None:
        return chunk
    return replace(chunk, response=replace(chunk.response, provider=key))


def _providers_from(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {
        "ollama": OllamaProvider(
            settings.ollama_base_url, default_model=settings.ollama_default_model
        ),
        "openai": OpenAICompatProvider(settings.openai_base_url, settings.openai_api_key),
    }
    if settings.local_model_url:
        providers[local_model.LOCAL_PROVIDER] = OpenAICompatProvider(
            settings.local_model_url,
            name=local_model.LOCAL_PROVIDER,
            default_model=local_model.MODEL_ALIAS,
        )
    return providers


def stand_in(settings: Settings, model: str) -> str:
    """`local/smollm2` for the default model (OLLAMA_DEFAULT_MODEL, which the shipped agents
    name) while the embedded local model runs: `serve` starts it only when no other model
    server answers. Other names route as written."""
    if not settings.local_model_url:
        return model
    if canonical_model(settings, model) == canonical_model(settings, ""):
        return local_model.LOCAL_MODEL
    return model


def default_router(settings: Settings, *, limits: Mapping[str, int] | None = None) -> Router:
    """The Ollama + OpenAI-compatible pair configured from settings, Ollama the default."""
    return Router(settings, None, limits=limits)


_routers: dict[tuple[object, ...], Router] = {}
_routers_lock = threading.Lock()


def router_for(settings: Settings) -> Router:
    """One router (its pooled HTTP sessions, its per-model limits) per process and provider
    configuration, shared by workflow steps and chat turns."""
    key = (
        settings.ollama_base_url,
        settings.openai_base_url,
        settings.openai_api_key,
        settings.local_model_url,
        tuple(sorted(settings.llm_concurrency.items())),
    )
    with _routers_lock:
        if key not in _routers:
            _routers[key] = default_router(settings, limits=settings.llm_concurrency)
        return _routers[key]

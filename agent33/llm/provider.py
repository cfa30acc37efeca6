"""The `Provider` protocol, its typed errors, and the HTTP transport and base both providers share.

Errors say whether retrying can help (`retryable`), so the router knows when to fall back and
Celery tasks know when to retry: unavailable (refused, timed out, 5xx, 503 busy) and rate
limited are retryable; any other 4xx is not. Every message names the provider and its URL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, TypedDict, TypeVar, Unpack

import requests
import structlog
import tenacity
from requests.adapters import HTTPAdapter

from agent33.errors import Agent33Error
from agent33.llm.types import ChatChunk, ChatRequest, ChatResponse, Options

log = structlog.get_logger(__name__)
E = TypeVar("E", bound="LLMError")


class LLMError(Agent33Error):
    """Base of provider errors; `retryable` tells callers whether another attempt can help."""

    code = "llm_error"
    http_status = 502
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        url: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.url = url
        self.status = status
        self.retry_after = retry_after

    def with_message(self, message: str) -> LLMError:
        """A copy with a new message (the router's summary), keeping class and attributes."""
        clone = copy.copy(self)
        clone.args = (message,)
        clone.message = message
        return clone


class ProviderUnavailable(LLMError):
    """Refused, dropped, timed out or 5xx: the server may answer a later attempt."""

    code = "provider_unavailable"
    http_status = 503
    retryable = True


class ProviderTimeout(ProviderUnavailable):
    """No byte within the read timeout. Not retried in-process: the budget is already spent
    and a saturated server would get one more queued request per attempt."""

    code = "provider_timeout"


class RateLimited(LLMError):
    """HTTP 429; `retry_after` (seconds) when the server said."""

    code = "rate_limited"
    http_status = 429
    retryable = True


class ProviderError(LLMError):
    """The request itself was refused (4xx) or the answer was malformed: retrying cannot help."""

    code = "provider_error"


class ModelNotFound(ProviderError):
    code = "model_not_found"
    http_status = 404


class Provider(Protocol):
    """What the router and the agent runtime need from a model server."""

    @property
    def name(self) -> str: ...

    def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]: ...

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, dimensions: int | None = None
    ) -> list[list[float]]: ...

    def list_models(self) -> list[str]: ...

    def health(self) -> bool: ...


def collect(chunks: Iterable[ChatChunk], where: str) -> ChatResponse:
    """Drain a stream into its final response (how `chat()` serves `request.stream=True`)."""
    for chunk in chunks:
        if chunk.done and chunk.response is not None:
            return chunk.response
    raise ProviderUnavailable(f"{where} is unavailable: the stream ended without a final answer")


def sampling(options: Options, *, max_tokens: str) -> dict[str, Any]:
    """The options that are set, under the server's names (`max_tokens` names the token cap),
    then `options.extra` passed through as it is."""
    mapped = {
        "temperature": options.temperature,
        max_tokens: options.max_tokens,
        "seed": options.seed,
        "top_p": options.top_p,
        "stop": list(options.stop) or None,
    }
    return {**{k: v for k, v in mapped.items() if v is not None}, **options.extra}


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderUnavailable) and not isinstance(exc, ProviderTimeout)


def _retry_after(value: str | None) -> float | None:
    """Seconds, as LLM APIs send it (an HTTP-date Retry-After is ignored)."""
    try:
        return max(0.0, float(value or ""))
    except ValueError:
        return None


def _detail(response: requests.Response) -> str:
    """The server's error text: Ollama `{"error": str}`, OpenAI `{"error": {"message": ...}}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error if error is not None else body)[:200]


class TransportOptions(TypedDict, total=False):
    """Connection tuning a provider passes through to its `HttpTransport` unchanged."""

    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float
    pool_size: int


class HttpTransport:
    """One pooled `requests.Session` per provider, mapping every failure to a typed error.

    Non-streamed calls, and streams that fail before their first line, are retried with
    exponential backoff and jitter on connection errors and 5xx; timeouts and 4xx are not.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        headers: dict[str, str] | None = None,
        pool_size: int = 16,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(headers or {})

    @property
    def where(self) -> str:
        return f"{self.provider} at {self.base_url}"

    def close(self) -> None:
        self.session.close()

    def error(self, kind: type[E], message: str, status: int | None = None, **extra: Any) -> E:
        return kind(message, provider=self.provider, url=self.base_url, status=status, **extra)

    def unavailable(self, reason: str, status: int | None = None) -> ProviderUnavailable:
        return self.error(ProviderUnavailable, f"{self.where} is unavailable: {reason}", status)

    def malformed(self, reason: str) -> ProviderError:
        return self.error(ProviderError, f"{self.where} sent a malformed answer: {reason}")

    @contextmanager
    def reading(self, what: str) -> Iterator[None]:
        """Read a decoded answer inside this block: a field of the wrong type or shape becomes
        a malformed-answer `ProviderError` naming `what`, never a bare traceback."""
        try:
            yield
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise self.malformed(f"unreadable {what} ({type(exc).__name__}: {exc})") from None

    def object(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.malformed(f"expected a JSON object, got {type(data).__name__}")
        return data

    def decode(self, payload: bytes, what: str) -> dict[str, Any]:
        """One streamed line or event, which must be a JSON object."""
        try:
            data = json.loads(payload)
        except ValueError:
            raise self.malformed(f"a non-JSON {what} {payload[:80]!r}") from None
        return self.object(data)

    def json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """Send one request and return its JSON body, which must be an object."""

        def once() -> dict[str, Any]:
            with self._send(method, path, body, timeout, stream=False) as response:
                try:
                    data = response.json()
                except ValueError:
                    raise self.malformed(f"a non-JSON body (HTTP {response.status_code})") from None
            return self.object(data)

        return self._retrying(retry)(once)

    def lines(self, path: str, body: Any, *, timeout: float | None = None) -> Iterator[bytes]:
        """POST and return the non-empty lines of the streamed answer (NDJSON or SSE)."""

        def open_stream() -> tuple[requests.Response, Iterator[bytes], list[bytes]]:
            response = self._send("POST", path, body, timeout, stream=True)
            lines = (line for line in response.iter_lines() if line)
            try:
                return response, lines, [next(lines)]
            except StopIteration:
                return response, lines, []
            except requests.RequestException as exc:
                response.close()
                raise self._transport_error(exc, timeout) from exc

        def rest(
            response: requests.Response, lines: Iterator[bytes], first: list[bytes]
        ) -> Iterator[bytes]:
            with response:
                try:
                    yield from first
                    yield from lines
                except requests.RequestException as exc:
                    raise self._transport_error(exc, timeout) from exc

        return rest(*self._retrying(True)(open_stream))

    def _send(
        self, method: str, path: str, body: Any, timeout: float | None, *, stream: bool
    ) -> requests.Response:
        limits = (self.connect_timeout, timeout or self.read_timeout)
        url = self.base_url + path
        try:
            response = self.session.request(method, url, json=body, timeout=limits, stream=stream)
        except requests.RequestException as exc:
            raise self._transport_error(exc, timeout) from exc
        if response.status_code >= 400:
            with response:
                model = body.get("model") if isinstance(body, dict) else None
                raise self._status_error(response, model)
        return response

    def _transport_error(self, exc: requests.RequestException, timeout: float | None) -> LLMError:
        text = str(exc).lower()
        if isinstance(exc, requests.ConnectTimeout):
            return self.unavailable(f"connect timed out after {self.connect_timeout:g}s")
        if isinstance(exc, requests.ReadTimeout | requests.ConnectionError) and "timed out" in text:
            read = timeout or self.read_timeout
            message = f"{self.where} is unavailable: no response within {read:g}s"
            return self.error(ProviderTimeout, message)
        if isinstance(exc, requests.ConnectionError) and "refused" in text:
            return self.unavailable("connection refused")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return self.unavailable("the connection dropped mid-response")
        if isinstance(exc, requests.ConnectionError):
            return self.unavailable(f"connection failed ({type(exc).__name__})")
        return self.error(ProviderError, f"{self.where} cannot be called: {exc}")

    def _status_error(self, response: requests.Response, model: str | None) -> LLMError:
        status, detail = response.status_code, _detail(response)
        if status == 404 and model and "model" in detail.lower():
            return self.error(ModelNotFound, f"model {model!r} not found on {self.where}", 404)
        if status == 429:
            after = _retry_after(response.headers.get("Retry-After"))
            message = f"{self.where} is rate limiting: {detail}"
            return self.error(RateLimited, message, status, retry_after=after)
        if status >= 500:
            reason = "busy" if status == 503 else "server error"
            return self.unavailable(f"{reason} (HTTP {status}): {detail}", status)
        message = f"{self.where} refused the request (HTTP {status}): {detail}"
        return self.error(ProviderError, message, status)

    def _retrying(self, enabled: bool) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            stop=tenacity.stop_after_attempt(self.retries + 1 if enabled else 1),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.backoff, max=self.max_backoff, jitter=self.backoff
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("llm.retry", provider=self.provider, attempt=state.attempt_number, error=error)


class HttpProvider:
    """What both providers share: their name, default models, one transport and its lifecycle."""

    health_path: ClassVar[str]

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        default_model: str,
        embed_model: str,
        headers: dict[str, str] | None = None,
        **transport: Unpack[TransportOptions],
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.embed_model = embed_model
        self.http = HttpTransport(name, base_url, headers=headers, **transport)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def close(self) -> None:
        self.http.close()

    def health(self) -> bool:
        """One quick, un-retried call: health checks must not outlive their deadline."""
        try:
            self.http.json("GET", self.health_path, retry=False, timeout=5.0)
        except LLMError:
            return False
        return True

    def _post_embed(
        self, path: str, texts: Sequence[str], model: str | None, dimensions: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model or self.embed_model, "input": list(texts)}
        if dimensions:
            body["dimensions"] = dimensions
        return self.http.json("POST", path, body)

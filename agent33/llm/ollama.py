"""Ollama over its native HTTP API (shared/OLLAMA-API.md): `/api/chat`, `/api/embed`, `/api/tags`.

The native API rather than Ollama's OpenAI shim, because only it reports load/eval durations,
`done_reason` and mid-stream `{"error": ...}` lines, which we need to tell a finished answer
from a cut-off one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from agent33.llm.provider import HttpTransport, LLMError, collect
from agent33.llm.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Options,
    ToolCall,
    Usage,
)


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def _options(options: Options) -> dict[str, Any]:
    mapped = {
        "temperature": options.temperature,
        "num_predict": options.max_tokens,
        "seed": options.seed,
        "top_p": options.top_p,
        "stop": list(options.stop) or None,
    }
    return {**{k: v for k, v in mapped.items() if v is not None}, **options.extra}


def _tool_calls(raw: Any) -> list[ToolCall]:
    """Ollama sends `arguments` as an object and no id; we mint one so replies can cite it."""
    calls = []
    for item in raw or ():
        function = item.get("function") or {}
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            arguments = json.loads(arguments or "{}")
        call_id = item.get("id") or f"call_{uuid.uuid4().hex[:12]}"
        calls.append(ToolCall(id=call_id, name=function.get("name", ""), arguments=arguments))
    return calls


class OllamaProvider:
    """One Ollama server; `default_model` answers requests that name no model."""

    def __init__(
        self,
        base_url: str,
        *,
        default_model: str = "llama3.2",
        embed_model: str = "nomic-embed-text",
        connect_timeout: float = 3.0,
        read_timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        pool_size: int = 16,
        name: str = "ollama",
    ) -> None:
        self.name = name
        self.default_model = default_model
        self.embed_model = embed_model
        self.http = HttpTransport(
            name,
            base_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
            backoff=backoff,
            pool_size=pool_size,
        )

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def close(self) -> None:
        self.http.close()

    def chat(self, request: ChatRequest) -> ChatResponse:
        if request.stream:
            return collect(self.stream(request), self.http.where)
        started = time.monotonic()
        model = request.model or self.default_model
        body = self._body(request, model, False)
        data = self._object(self.http.json("POST", "/api/chat", body, timeout=request.timeout))
        message = data.get("message") or {}
        calls = self._calls(message)
        return self._response(model, message.get("content") or "", calls, data, started)

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """Yield content deltas; the last chunk carries the full answer and usage."""
        started = time.monotonic()
        model = request.model or self.default_model
        body = self._body(request, model, True)
        parts: list[str] = []
        calls: list[ToolCall] = []
        for line in self.http.lines("/api/chat", body, timeout=request.timeout):
            data = self._decode(line)
            message = data.get("message") or {}
            calls.extend(self._calls(message))
            if delta := message.get("content") or "":
                parts.append(delta)
                yield ChatChunk(delta)
            if data.get("done"):
                response = self._response(model, "".join(parts), calls, data, started)
                yield ChatChunk("", done=True, response=response)
                return
        raise self.http.unavailable("the stream ended before its final (done) object")

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, dimensions: int | None = None
    ) -> list[list[float]]:
        """L2-normalised vectors, one per text, in order."""
        if not texts:
            return []
        model = model or self.embed_model
        body: dict[str, Any] = {"model": model, "input": list(texts)}
        if dimensions:
            body["dimensions"] = dimensions
        data = self._object(self.http.json("POST", "/api/embed", body))
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise self.http.malformed(f"expected {len(texts)} embeddings from /api/embed")
        return [[float(x) for x in vector] for vector in vectors]

    def list_models(self) -> list[str]:
        data = self._object(self.http.json("GET", "/api/tags"))
        return [str(m["name"]) for m in data.get("models") or ()]

    def health(self) -> bool:
        """One quick, un-retried call: health checks must not outlive their deadline."""
        try:
            self.http.json("GET", "/api/version", retry=False, timeout=5.0)
        except LLMError:
            return False
        return True

    def _body(self, request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [_message(m) for m in request.messages],
            "stream": stream,
        }
        if request.tools:
            body["tools"] = [tool.as_function() for tool in request.tools]
        if request.response_format is not None:
            fmt = request.response_format
            body["format"] = fmt if isinstance(fmt, str) else dict(fmt)
        if options := _options(request.options):
            body["options"] = options
        return body

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            data = json.loads(line)
        except ValueError:
            raise self.http.malformed(f"a non-JSON stream line {line[:80]!r}") from None
        data = self._object(data)
        if "error" in data:
            raise self.http.unavailable(f"the stream failed mid-answer: {data['error']}")
        return data

    def _object(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.http.malformed(f"expected a JSON object, got {type(data).__name__}")
        return data

    def _calls(self, message: dict[str, Any]) -> list[ToolCall]:
        try:
            return _tool_calls(message.get("tool_calls"))
        except (AttributeError, TypeError, ValueError) as exc:
            raise self.http.malformed(f"unreadable tool_calls ({exc})") from None

    def _response(
        self,
        model: str,
        content: str,
        calls: Sequence[ToolCall],
        final: dict[str, Any],
        started: float,
    ) -> ChatResponse:
        """Ollama says `done_reason: "stop"` even for tool calls; we report `tool_calls`."""
        finish: FinishReason = "stop"
        if calls:
            finish = "tool_calls"
        elif final.get("done_reason") == "length":
            finish = "length"
        total_ns = final.get("total_duration")
        latency_ms = total_ns / 1e6 if total_ns else (time.monotonic() - started) * 1000
        return ChatResponse(
            content=content,
            tool_calls=tuple(calls),
            finish_reason=finish,
            usage=Usage.of(final.get("prompt_eval_count"), final.get("eval_count")),
            latency_ms=float(latency_ms),
            model=str(final.get("model") or model),
            provider=self.name,
        )

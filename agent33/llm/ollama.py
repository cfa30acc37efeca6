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
from typing import Any, Unpack

from agent33.llm.provider import HttpProvider, TransportOptions, collect, sampling
from agent33.llm.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
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


class OllamaProvider(HttpProvider):
    """One Ollama server; `default_model` answers requests that name no model."""

    health_path = "/api/version"

    def __init__(
        self,
        base_url: str,
        *,
        default_model: str = "llama3.2",
        embed_model: str = "nomic-embed-text",
        name: str = "ollama",
        **transport: Unpack[TransportOptions],
    ) -> None:
        super().__init__(
            name, base_url, default_model=default_model, embed_model=embed_model, **transport
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        if request.stream:
            return collect(self.stream(request), self.http.where)
        started = time.monotonic()
        model = request.model or self.default_model
        body = self._body(request, model, False)
        data = self.http.json("POST", "/api/chat", body, timeout=request.timeout)
        with self.http.reading("/api/chat answer"):
            message = data.get("message") or {}
            calls = _tool_calls(message.get("tool_calls"))
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
            with self.http.reading("/api/chat stream line"):
                message = data.get("message") or {}
                calls.extend(_tool_calls(message.get("tool_calls")))
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
        data = self._post_embed("/api/embed", texts, model, dimensions)
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise self.http.malformed(f"expected {len(texts)} embeddings from /api/embed")
        with self.http.reading("/api/embed answer"):
            return [[float(x) for x in vector] for vector in vectors]

    def list_models(self) -> list[str]:
        data = self.http.json("GET", "/api/tags")
        with self.http.reading("/api/tags answer"):
            return [str(m["name"]) for m in data.get("models") or ()]

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
        if options := sampling(request.options, max_tokens="num_predict"):
            body["options"] = options
        return body

    def _decode(self, line: bytes) -> dict[str, Any]:
        data = self.http.decode(line, "stream line")
        if "error" in data:
            raise self.http.unavailable(f"the stream failed mid-answer: {data['error']}")
        return data

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
        with self.http.reading("/api/chat final object"):
            total_ns = final.get("total_duration")
            latency_ms = total_ns / 1e6 if total_ns else (time.monotonic() - started) * 1000
            usage = Usage.of(final.get("prompt_eval_count"), final.get("eval_count"))
        return ChatResponse(
            content=content,
            tool_calls=tuple(calls),
            finish_reason=finish,
            usage=usage,
            latency_ms=float(latency_ms),
            model=str(final.get("model") or model),
            provider=self.name,
        )

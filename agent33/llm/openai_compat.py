"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, LM Studio, Groq...) via `/v1/...`.

Streams ask for `stream_options.include_usage` so the final answer carries token counts like
Ollama's, and a stream that stops before a `finish_reason` is an error, never a short answer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Unpack
from urllib.parse import urlsplit

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

_VERSION_SEGMENT = re.compile(r"(^|/)v\d+[a-z0-9]*(/|$)")
_FINISH: dict[str, FinishReason] = {
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


def normalise_base_url(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean `.../v1`; a URL that already has a
    version segment (Gemini's `/v1beta/openai`) is kept as it is."""
    url = url.rstrip("/")
    return url if _VERSION_SEGMENT.search(urlsplit(url).path) else f"{url}/v1"


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _response_format(fmt: Any) -> dict[str, Any]:
    if fmt == "json":
        return {"type": "json_object"}
    if "json_schema" in fmt:  # already in OpenAI's envelope
        return dict(fmt)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(fmt.get("title") or "response"))[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(fmt)}}


def _finish(reason: Any, calls: Sequence[ToolCall]) -> FinishReason:
    return "tool_calls" if calls else _FINISH.get(str(reason), "stop")


class OpenAICompatProvider(HttpProvider):
    """One OpenAI-compatible endpoint; the key travels as a bearer token on every call."""

    health_path = "/models"

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        default_model: str = "gpt-4o-mini",
        embed_model: str = "text-embedding-3-small",
        name: str = "openai",
        **transport: Unpack[TransportOptions],
    ) -> None:
        super().__init__(
            name,
            normalise_base_url(base_url),
            default_model=default_model,
            embed_model=embed_model,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            **transport,
        )

    def chat(self, request: ChatRequest) -> ChatResponse:
        if request.stream:
            return collect(self.stream(request), self.http.where)
        started = time.monotonic()
        model = request.model or self.default_model
        body = self._body(request, model, False)
        data = self.http.json("POST", "/chat/completions", body, timeout=request.timeout)
        with self.http.reading("/chat/completions answer"):
            choice = (data.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            calls = self._calls(
                {
                    i: (c.get("id"), c.get("function") or {})
                    for i, c in enumerate(message.get("tool_calls") or ())
                }
            )
            return self._response(
                model,
                message.get("content") or "",
                calls,
                choice.get("finish_reason"),
                data.get("usage"),
                data.get("model"),
                started,
            )

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """Yield content deltas; tool-call fragments are joined by index for the last chunk."""
        started = time.monotonic()
        model = request.model or self.default_model
        body = self._body(request, model, True)
        parts: list[str] = []
        pending: dict[int, tuple[str | None, dict[str, str]]] = {}
        finish: Any = None
        usage: Any = None
        served: Any = None
        error_event = False
        for line in self.http.lines("/chat/completions", body, timeout=request.timeout):
            if line.startswith(b"event:"):
                error_event = b"error" in line
                continue
            if not line.startswith(b"data:"):
                continue  # SSE comments (": keep-alive") and unknown fields
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            data = self.http.decode(payload, "stream event")
            if error_event or "error" in data:
                error = data.get("error", data)
                detail = error.get("message", error) if isinstance(error, dict) else error
                raise self.http.unavailable(f"the stream failed mid-answer: {detail}")
            usage = data.get("usage") or usage
            served = data.get("model") or served
            deltas: list[str] = []
            with self.http.reading("/chat/completions stream event"):
                for choice in data.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if content := delta.get("content"):
                        deltas.append(content)
                    for fragment in delta.get("tool_calls") or ():
                        self._accumulate(pending, fragment)
                    finish = choice.get("finish_reason") or finish
            for content in deltas:
                parts.append(content)
                yield ChatChunk(content)
        if finish is None:
            raise self.http.unavailable("the stream ended before a finish_reason")
        with self.http.reading("/chat/completions stream"):
            calls = self._calls(pending)
            response = self._response(model, "".join(parts), calls, finish, usage, served, started)
        yield ChatChunk("", done=True, response=response)

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, dimensions: int | None = None
    ) -> list[list[float]]:
        if not texts:
            return []
        data = self._post_embed("/embeddings", texts, model, dimensions)
        with self.http.reading("/embeddings answer"):
            items = sorted(data.get("data") or (), key=lambda item: int(item.get("index", 0)))
            if len(items) != len(texts):
                raise self.http.malformed(f"expected {len(texts)} embeddings from /embeddings")
            return [[float(x) for x in item["embedding"]] for item in items]

    def list_models(self) -> list[str]:
        data = self.http.json("GET", "/models")
        with self.http.reading("/models answer"):
            return [str(item["id"]) for item in data.get("data") or ()]

    def _body(self, request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [_message(m) for m in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [tool.as_function() for tool in request.tools]
        if request.response_format is not None:
            body["response_format"] = _response_format(request.response_format)
        body.update(sampling(request.options, max_tokens="max_tokens"))
        return body

    @staticmethod
    def _accumulate(
        pending: dict[int, tuple[str | None, dict[str, str]]], fragment: dict[str, Any]
    ) -> None:
        """Streamed tool calls arrive as fragments keyed by `index`: id and name once,
        `arguments` as string pieces to concatenate."""
        index = int(fragment.get("index", len(pending)))
        call_id, function = pending.get(index, (None, {"name": "", "arguments": ""}))
        piece = fragment.get("function") or {}
        function["name"] += piece.get("name") or ""
        function["arguments"] += piece.get("arguments") or ""
        pending[index] = (call_id or fragment.get("id"), function)

    def _calls(self, raw: Mapping[int, tuple[Any, Mapping[str, Any]]]) -> list[ToolCall]:
        calls = []
        for index in sorted(raw):
            call_id, function = raw[index]
            name = str(function.get("name") or "")
            raw_arguments = function.get("arguments") or "{}"
            try:  # a JSON string per the spec; some compatible servers send the object itself
                arguments = (
                    raw_arguments if isinstance(raw_arguments, dict) else json.loads(raw_arguments)
                )
            except (TypeError, ValueError):
                raise self.http.malformed(f"tool call {name!r} has non-JSON arguments") from None
            if not isinstance(arguments, dict):
                raise self.http.malformed(f"tool call {name!r} arguments are not an object")
            calls.append(
                ToolCall(id=str(call_id or f"call_{index}"), name=name, arguments=arguments)
            )
        return calls

    def _response(
        self,
        model: str,
        content: str,
        calls: Sequence[ToolCall],
        finish: Any,
        usage: Any,
        served: Any,
        started: float,
    ) -> ChatResponse:
        usage = usage if isinstance(usage, dict) else {}
        return ChatResponse(
            content=content,
            tool_calls=tuple(calls),
            finish_reason=_finish(finish, calls),
            usage=Usage.of(usage.get("prompt_tokens"), usage.get("completion_tokens")),
            latency_ms=(time.monotonic() - started) * 1000,
            model=str(served or model),
            provider=self.name,
        )

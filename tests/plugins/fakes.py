"""Fake model servers on 127.0.0.1 that speak the real Ollama (shared/OLLAMA-API.md) and OpenAI
HTTP APIs, so provider code is tested over real sockets, chunked streams and status codes.

Per test: `script(...)` queues replies (default: "echo: <last user message>"), `mode` injects a
fault on every request (ok | 503 | 500 | 429 | hang | drop-mid-stream | error-mid-stream |
truncate),
`fail(mode, times)` injects one on the next requests only, `latency` delays the first byte,
`chunk_delay` paces stream chunks, and `requests` records (path, JSON body) in arrival order.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

Route = Callable[[BaseHTTPRequestHandler, dict[str, Any], str], None]
NS_PER_TOKEN = 20_000_000


@dataclass
class Reply:
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "arguments"}]
    done_reason: str | None = None


@dataclass
class Turn:
    reply: Reply
    pieces: list[str]
    reason: str
    prompt_tokens: int
    completion_tokens: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hung or keep-alive handler must not block shutdown

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closed its kept-alive connection is normal, not a traceback on
        stderr (which a test capturing a command's output would read as the command's)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def tokens(text: str) -> list[str]:
    """Word pieces with their leading space, as a tokenizer would stream them."""
    return re.findall(r"\s*\S+", text)


def vector(text: str, dims: int, full: int) -> list[float]:
    """Deterministic per text; truncated to `dims` and then L2-normalised, as Ollama does."""
    rng = random.Random(text)
    values = [rng.gauss(0.0, 1.0) for _ in range(full)][: min(dims, full)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class FakeServer:
    """The HTTP plumbing and scripting shared by both fakes; subclasses add `routes`."""

    models: list[str]

    def __init__(self) -> None:
        self.mode = "ok"
        self.latency = 0.0
        self.chunk_delay = 0.0
        self.embed_dim = 64
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: deque[Reply] = deque()
        self.faults: deque[str] = deque()
        self.released = threading.Event()
        self.local = threading.local()  # the current request's mode (one thread per connection)
        self.server = _Server(("127.0.0.1", 0), self._handler())
        serve = {"poll_interval": 0.05}  # quick shutdown between tests
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(
        self, content: str = "", tool_calls: list[dict[str, Any]] | None = None, **kw: Any
    ) -> Reply:
        reply = Reply(content, list(tool_calls or ()), **kw)
        self.replies.append(reply)
        return reply

    def fail(self, mode: str, times: int = 1) -> None:
        self.faults.extend([mode] * times)

    def next_reply(self, messages: list[dict[str, Any]]) -> Reply:
        try:
            return self.replies.popleft()
        except IndexError:
            users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
            return Reply(f"echo: {users[-1] if users else ''}")

    def knows(self, model: Any) -> bool:
        def full(name: str) -> str:
            return name if ":" in name else f"{name}:latest"

        return isinstance(model, str) and full(model) in {full(m) for m in self.models}

    def routes(self) -> dict[tuple[str, str], Route]:
        raise NotImplementedError

    def error_body(self, status: int, message: str, code: str = "") -> dict[str, Any]:
        return {"error": message}

    def send_json(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if status == 200 and self.local.mode == "drop-mid-stream":
            data, h.close_connection = data[: len(data) // 2], True  # short of Content-Length
        h.wfile.write(data)

    def turn(self, body: dict[str, Any], limit: Any) -> Turn:
        """The scripted (or echo) reply cut to the token limit, with token counts."""
        messages = body.get("messages") or []
        reply = self.next_reply(messages)
        pieces, reason = tokens(reply.content), reply.done_reason or "stop"
        if limit and 0 < limit < len(pieces):
            pieces, reason = pieces[:limit], "length"
        prompt = max(1, sum(len(tokens(str(m.get("content") or ""))) for m in messages))
        return Turn(reply, pieces, reason, prompt, max(1, len(pieces)))

    def stream(
        self,
        h: BaseHTTPRequestHandler,
        mode: str,
        content_type: str,
        events: list[bytes],
        *,
        fault_at: int,
        error: bytes,
    ) -> None:
        """Chunked body, one event per chunk; a mid-stream fault cuts in at `fault_at`."""
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if mode == "error-mid-stream":
            events = [*events[:fault_at], error]
        elif mode == "truncate":  # ended cleanly but early, as a proxy timing out might
            events = events[:fault_at]
        elif mode == "drop-mid-stream":
            events = events[:fault_at]
            h.close_connection = True  # and no terminating chunk: a truncated stream
        for data in events:
            h.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()
            time.sleep(self.chunk_delay)
        if not h.close_connection:
            h.wfile.write(b"0\r\n\r\n")

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        self.requests.append((h.path, body))
        self.headers.append(dict(h.headers))
        try:
            mode = self.faults.popleft()
        except IndexError:
            mode = self.mode
        self.local.mode = mode
        if self.latency:
            time.sleep(self.latency)
        if mode == "hang":
            self.released.wait()
            h.close_connection = True
        elif mode in ("429", "500", "503"):
            status = int(mode)
            message = {429: "rate limit reached", 500: "llama runner process has terminated"}
            text = message.get(status, "server busy, please try again.")
            self.send_json(h, status, self.error_body(status, text), {"Retry-After": "1"})
        elif (route := self.routes().get((method, h.path))) is None:
            self.send_json(h, 404, self.error_body(404, f"{h.path} not found"))
        else:
            route(h, body, mode)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as real servers
            disable_nagle_algorithm = True  # as Go's net/http (Ollama): no 40 ms delayed-ACK stalls

            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                fake._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                fake._serve(self, "POST")

        return Handler

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class FakeOllama(FakeServer):
    """`/api/chat` (NDJSON streamed by default), `/api/embed`, `/api/tags`, `/api/version`."""

    def __init__(self) -> None:
        super().__init__()
        self.models = ["llama3.2:latest", "nomic-embed-text:latest"]

    def routes(self) -> dict[tuple[str, str], Route]:
        version = {"version": "0.12.0"}
        return {
            ("GET", "/api/tags"): lambda h, _b, _m: self.send_json(h, 200, self.tags()),
            ("GET", "/api/version"): lambda h, _b, _m: self.send_json(h, 200, version),
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/embed"): self._embed,
        }

    def tags(self) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        details = {"format": "gguf", "family": "llama", "parameter_size": "3.2B"}
        common = {"modified_at": now, "size": 1, "digest": "0" * 64, "details": details}
        return {"models": [{"name": m, "model": m, **common} for m in self.models]}

    def _missing(self, h: BaseHTTPRequestHandler, model: Any) -> bool:
        if not model:
            self.send_json(h, 400, {"error": "model is required"})
        elif not self.knows(model):
            self.send_json(h, 404, {"error": f'model "{model}" not found, try pulling it first'})
        return not self.knows(model)

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any], mode: str) -> None:
        if self._missing(h, model := body.get("model")):
            return
        turn = self.turn(body, (body.get("options") or {}).get("num_predict"))
        prompt, evals = turn.prompt_tokens, turn.completion_tokens
        total = int(self.latency * 1e9) + (1 + prompt) * 1_000_000 + evals * NS_PER_TOKEN
        reason = turn.reason if body.get("messages") else "load"
        head = {"model": model, "created_at": datetime.now(UTC).isoformat()}
        final = {**head, "done": True, "done_reason": reason, "total_duration": total}
        final.update(load_duration=1_000_000, prompt_eval_count=prompt)
        final.update(prompt_eval_duration=prompt * 1_000_000, eval_count=evals)
        final.update(eval_duration=evals * NS_PER_TOKEN)
        calls: list[dict[str, Any]] = [
            {"function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in turn.reply.tool_calls
        ]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(turn.pieces)}
        if body.get("stream") is False:
            if mode == "error-mid-stream":
                return self.send_json(h, 500, {"error": "llama runner process has terminated"})
            return self.send_json(
                h,
                200,
                {**final, "message": {**message, **({"tool_calls": calls} if calls else {})}},
            )
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": p} for p in turn.pieces]
        deltas += [{"role": "assistant", "content": "", "tool_calls": calls}] if calls else []
        lines = [{**head, "message": delta, "done": False} for delta in deltas]
        lines.append({**final, "message": {"role": "assistant", "content": ""}})
        error = {"error": "an error was encountered while running the model: unexpected EOF"}
        ndjson = [json.dumps(line).encode() + b"\n" for line in [*lines, error]]
        self.stream(h, mode, "application/x-ndjson", ndjson[:-1], fault_at=1, error=ndjson[-1])

    def _embed(self, h: BaseHTTPRequestHandler, body: dict[str, Any], _: str) -> None:
        if self._missing(h, body.get("model")):
            return
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else texts
        dims = body.get("dimensions") or self.embed_dim
        embeddings = [vector(t, dims, self.embed_dim) for t in texts]
        result = {"model": body["model"], "embeddings": embeddings, "total_duration": 1_000_000}
        self.send_json(h, 200, {**result, "load_duration": 1000, "prompt_eval_count": len(texts)})


class FakeOpenAI(FakeServer):
    """`/v1/chat/completions` (JSON, or SSE `data:` events ending `data: [DONE]`),
    `/v1/embeddings`, `/v1/models`; `api_key`, when set, is required as a bearer token."""

    def __init__(self) -> None:
        super().__init__()
        self.models = ["gpt-4o-mini", "text-embedding-3-small"]
        self.api_key = ""

    def error_body(self, status: int, message: str, code: str = "") -> dict[str, Any]:
        kind = {429: "requests", 500: "server_error", 503: "server_error"}
        error = {"message": message, "type": kind.get(status, "invalid_request_error")}
        return {"error": {**error, "param": None, "code": code or None}}

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
        }

    def _refused(self, h: BaseHTTPRequestHandler, model: Any = "") -> bool:
        if self.api_key and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            body = self.error_body(401, "Incorrect API key provided", "invalid_api_key")
            self.send_json(h, 401, body)
        elif model != "" and not self.knows(model):
            text = f"The model `{model}` does not exist or you do not have access to it."
            self.send_json(h, 404, self.error_body(404, text, "model_not_found"))
        else:
            return False
        return True

    def _models(self, h: BaseHTTPRequestHandler, _: dict[str, Any], __: str) -> None:
        if not self._refused(h):
            data = [
                {"id": m, "object": "model", "created": 1, "owned_by": "system"}
                for m in self.models
            ]
            self.send_json(h, 200, {"object": "list", "data": data})

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any], mode: str) -> None:
        if self._refused(h, model := body.get("model")):
            return
        turn = self.turn(body, body.get("max_completion_tokens") or body.get("max_tokens"))
        prompt, completion = turn.prompt_tokens, turn.completion_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        calls: list[dict[str, Any]] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in turn.reply.tool_calls
        ]
        finish = "tool_calls" if calls else turn.reason
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model,
        }
        if not body.get("stream"):
            if mode == "error-mid-stream":
                return self.send_json(h, 500, self.error_body(500, "The server had an error"))
            content = "".join(turn.pieces) or (None if calls else "")
            message = {"role": "assistant", "content": content, "refusal": None}
            choice = {
                "index": 0,
                "message": {**message, **({"tool_calls": calls} if calls else {})},
            }
            choice.update(logprobs=None, finish_reason=finish)
            return self.send_json(
                h, 200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": piece} for piece in turn.pieces]
        for i, call in enumerate(calls):  # id and name first, then the arguments in two pieces
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            function = {"name": name, "arguments": ""}
            deltas.append(
                {
                    "tool_calls": [
                        {"index": i, "id": call["id"], "type": "function", "function": function}
                    ]
                }
            )
            for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
        chunk = {
            **head,
            "object": "chat.completion.chunk",
            **({"usage": None} if include_usage else {}),
        }
        events: list[Any] = [
            {
                **chunk,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            }
            for delta in deltas
        ]
        events.append(
            {
                **chunk,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
            }
        )
        events += [{**chunk, "choices": [], "usage": usage}] if include_usage else []
        events += [
            "[DONE]",
            self.error_body(500, "The server had an error while processing your request."),
        ]
        sse = [
            b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
            for e in events
        ]
        self.stream(
            h, mode, "text/event-stream; charset=utf-8", sse[:-1], fault_at=2, error=sse[-1]
        )

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any], _: str) -> None:
        if self._refused(h, body.get("model")):
            return
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else texts
        dims = body.get("dimensions") or self.embed_dim
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t, dims, self.embed_dim)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        self.send_json(
            h, 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake

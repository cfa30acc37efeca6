"""The local model's server process: a small OpenAI-compatible `/v1` API on `llama_cpp.Llama`.

Started by `agent33.llm.local_model` as `python -m agent33.llm.local_server --model F.gguf
--port N`. llama-cpp-python's own server is not used because its streams carry no token counts
(`stream_options.include_usage` is ignored); here every answer, streamed or not, ends with its
usage, counted from the tokens actually fed to and sampled from the model. Tools and
`response_format` are ignored: the shipped 135M model cannot follow them. One generation runs
at a time (a `Llama` is not thread-safe); other requests wait their turn.
"""

from __future__ import annotations

import argparse
import codecs
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

DEFAULT_CONTEXT = 2048
ROLES = ("system", "user", "assistant", "tool")


class BadRequest(ValueError):
    """The request body is unusable; the message names the field."""


@dataclass(frozen=True)
class Completion:
    """One request, validated: the prompt's token ids and the sampling settings."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool
    include_usage: bool


@dataclass
class Piece:
    """A streamed piece of text, or (last) the finish reason and the token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LocalModel:
    """A loaded GGUF model plus its chat template; `lock` serialises generation."""

    def __init__(self, path: str, alias: str, n_ctx: int, threads: int | None) -> None:
        self.alias = alias
        self.llama = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, verbose=False)
        self.lock = threading.Lock()
        eos, bos = self.llama.token_eos(), self.llama.token_bos()
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise SystemExit(f"{path} has no chat template (tokenizer.chat_template)")
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.llama.detokenize([eos], special=True).decode(errors="replace"),
            bos_token=self.llama.detokenize([bos], special=True).decode(errors="replace"),
            stop_token_ids=[eos],
        )

    def parse(self, body: Any) -> Completion:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: a non-empty list is required")
        prompt = self._prompt([_message(i, m) for i, m in enumerate(messages)])
        room = self.llama.n_ctx() - len(prompt)
        if room <= 0:
            raise BadRequest(
                f"messages: the prompt is {len(prompt)} tokens, over the context window of "
                f"{self.llama.n_ctx()}"
            )
        options = body.get("stream_options") or {}
        return Completion(
            prompt=prompt,
            max_tokens=min(room, _number(body, "max_tokens", room, int, 1)),
            temperature=_number(body, "temperature", 0.8, float, 0),
            top_p=_number(body, "top_p", 0.95, float, 0),
            stream=bool(body.get("stream")),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        )

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        formatted = self.formatter(messages=messages)  # type: ignore[arg-type]
        return self.llama.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )

    def generate(self, job: Completion) -> Iterator[Piece]:
        """Sample up to `max_tokens` tokens, yielding text as complete UTF-8 arrives."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self.llama._model.vocab  # noqa: SLF001 - the end-of-generation test llama uses
        sampled: list[int] = []
        finish = "length"
        for token in self.llama.generate(job.prompt, temp=job.temperature, top_p=job.top_p):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            piece = self.llama.detokenize([token], prev_tokens=job.prompt + sampled)
            sampled.append(token)
            if text := decoder.decode(piece):
                yield Piece(text)
            if len(sampled) >= job.max_tokens:
                break
        if tail := decoder.decode(b"", final=True):
            yield Piece(tail)
        yield Piece("", finish, len(job.prompt), len(sampled))


def _message(index: int, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or raw.get("role") not in ROLES:
        raise BadRequest(f"messages[{index}].role: one of {', '.join(ROLES)} is required")
    content = raw.get("content") or ""
    if isinstance(content, list):  # OpenAI's content parts: keep the text ones
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise BadRequest(f"messages[{index}].content: a string is required")
    return {"role": str(raw["role"]), "content": content}


def _number(body: dict[str, Any], field: str, default: Any, kind: type, minimum: float) -> Any:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise BadRequest(f"{field}: a number >= {minimum:g} is required")
    return kind(value)


def _usage(last: Piece) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


class Handler(BaseHTTPRequestHandler):
    """`GET /v1/models`, `GET /health`, `POST /v1/chat/completions` (streamed or not)."""

    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self._json(HTTPStatus.OK, {"status": "ok", "model": self.server.model.alias})
        elif self.path.rstrip("/") == "/v1/models":
            model = {"id": self.server.model.alias, "object": "model", "owned_by": "agent33"}
            self._json(HTTPStatus.OK, {"object": "list", "data": [model]})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            job = self.server.model.parse(json.loads(self.rfile.read(length) or b"null"))
        except (ValueError, BadRequest) as exc:  # JSONDecodeError is a ValueError
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        answer_id = f"chatcmpl-{uuid.uuid4().hex}"
        with self.server.model.lock:
            if job.stream:
                self._stream(answer_id, job)
            else:
                self._complete(answer_id, job)

    def _complete(self, answer_id: str, job: Completion) -> None:
        pieces = list(self.server.model.generate(job))
        last = pieces[-1]
        message = {"role": "assistant", "content": "".join(p.text for p in pieces)}
        choice = {"index": 0, "message": message, "finish_reason": last.finish_reason}
        self._json(
            HTTPStatus.OK,
            {
                **self._envelope(answer_id, "chat.completion"),
                "choices": [choice],
                "usage": _usage(last),
            },
        )

    def _stream(self, answer_id: str, job: Completion) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        envelope = self._envelope(answer_id, "chat.completion.chunk")
        try:
            self._event({**envelope, "choices": [_delta({"role": "assistant"})]})
            for piece in self.server.model.generate(job):
                if piece.finish_reason is None:
                    self._event({**envelope, "choices": [_delta({"content": piece.text})]})
                    continue
                self._event({**envelope, "choices": [_delta({}, piece.finish_reason)]})
                if job.include_usage:
                    self._event({**envelope, "choices": [], "usage": _usage(piece)})
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            self.log_message("client went away mid-stream; generation stopped")

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _envelope(self, answer_id: str, kind: str) -> dict[str, Any]:
        model = self.server.model.alias
        return {"id": answer_id, "object": kind, "created": int(time.time()), "model": model}

    def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})


def _delta(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: LocalModel) -> None:
        super().__init__(address, Handler)
        self.model = model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--alias", default="smollm2", help="model id the API reports")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=DEFAULT_CONTEXT, help="context window")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: half)")
    args = parser.parse_args(argv)
    model = LocalModel(args.model, args.alias, args.ctx, args.threads)
    with Server((args.host, args.port), model) as server:
        print(f"serving {args.model} as {args.alias!r} on {args.host}:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()

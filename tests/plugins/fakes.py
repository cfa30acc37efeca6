"""Fake model servers on 127.0.0.1 that speak the real Ollama HTTP API (shared/OLLAMA-API.md)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeOllama:
    """Scriptable: `models` lists what /api/tags returns; `mode` is ok | 503."""

    def __init__(self) -> None:
        self.models = ["llama3.2:latest"]
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                fake.requests.append((self.path, {}))
                if fake.mode == "503":
                    self._send(503, {"error": "server busy"})
                elif self.path == "/api/tags":
                    now = datetime.now(UTC).isoformat()
                    models = [
                        {
                            "name": m,
                            "model": m,
                            "modified_at": now,
                            "size": 1,
                            "digest": "0" * 64,
                            "details": {"format": "gguf", "family": "llama"},
                        }
                        for m in fake.models
                    ]
                    self._send(200, {"models": models})
                elif self.path == "/api/version":
                    self._send(200, {"version": "0.12.0"})
                else:
                    self._send(404, {"error": "not found"})

        return Handler

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake

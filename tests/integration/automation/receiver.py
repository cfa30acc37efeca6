"""A real HTTP receiver on 127.0.0.1 for outbound webhooks: it records every request and
answers with a scripted status (the first `fail_first` requests fail, or all while `broken`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Script:
    fail_first: int = 0
    broken: bool = False
    status: int = 500
    seen: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> int:
        with self.lock:
            failing = self.broken or len(self.seen) < self.fail_first
            return self.status if failing else 200

    def ok(self) -> list[Received]:
        return [r for r in self.seen if r.status == 200]

    def wait_ok(self, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.ok()) >= count:
                return self.ok()
            time.sleep(0.05)
        raise AssertionError(f"{len(self.ok())} successful deliveries of {count} in {timeout}s")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        script = cast(Any, self.server).script
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = script.answer()
        with script.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            script.seen.append(Received(self.path, headers=headers, body=body, status=status))
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/followed")
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def receiver(script: Script) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    cast(Any, server).script = script
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, received: Received, tolerance: int = 300) -> None:
    """The Standard Webhooks check, written out (not the sender's code): HMAC-SHA256 with the
    base64-decoded `whsec_` key over `id.timestamp.body`, base64, any `v1,` entry matching."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < tolerance
    signed = f"{msg_id}.{timestamp}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    entries = received.headers["webhook-signature"].split(" ")
    assert f"v1,{expected}" in entries, (entries, expected)

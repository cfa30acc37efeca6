"""Fake chat platforms on 127.0.0.1 that speak each platform's real send API
(shared/PLATFORM-APIS.md): Telegram `sendMessage`, Slack `chat.postMessage`, Discord's
interaction follow-ups and WhatsApp Cloud `/messages`.

Each checks the credential and the fields the platform requires, records what it accepted in
`sent`, and answers with the platform's own envelope. `fail(mode, times)` makes the next
requests fail: `429` (with the platform's retry hint), `500`, or `refuse` (a permanent error).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakePlatform:
    """A threaded HTTP server; subclasses implement `answer` for the platform's API."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.sent: list[dict[str, Any]] = []
        self.times: list[float] = []  # when each accepted message arrived (monotonic)
        self.faults: deque[str] = deque()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, reply, extra = fake.handle(Call(self.command, self.path, headers, body))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_GET = _serve  # noqa: N815 - http.server API

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def fail(self, mode: str, times: int = 1) -> None:
        self.faults.extend([mode] * times)

    def handle(self, call: Call) -> Answer:
        with self.lock:
            self.calls.append(call)
            mode = self.faults.popleft() if self.faults else None
        return self.answer(call, mode)

    def answer(self, call: Call, mode: str | None) -> Answer:
        raise NotImplementedError

    def accept(self, record: dict[str, Any]) -> int:
        with self.lock:
            self.sent.append(record)
            self.times.append(time.monotonic())
            return len(self.sent)

    def wait_sent(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.sent) >= count:
                return list(self.sent)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.sent)} messages sent of {count} in {timeout}s")

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeTelegram(FakePlatform):
    """`POST /bot<token>/sendMessage` and `setWebhook`."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def answer(self, call: Call, mode: str | None) -> Answer:
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", call.path)
        if match is None or match.group(1) != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, {}
        if mode == "429":
            return (
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
                {},
            )
        if mode == "500":
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}, {}
        if mode == "refuse":
            return (
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                {},
            )
        if match.group(2).lower() == "setwebhook":
            self.accept({"method": "setWebhook", **call.body})
            return 200, {"ok": True, "result": True, "description": "Webhook was set"}, {}
        text = call.body.get("text")
        if "chat_id" not in call.body or not isinstance(text, str) or not text:
            return (
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
                {},
            )
        if len(text) > 4096:
            return (
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
                {},
            )
        message_id = 1000 + self.accept(call.body)
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": call.body["chat_id"], "type": "private"},
            "from": {"id": 42, "is_bot": True, "first_name": "Bot"},
            "text": text,
        }
        return 200, {"ok": True, "result": result}, {}


class FakeSlack(FakePlatform):
    """`POST /api/chat.postMessage` with a bearer bot token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def answer(self, call: Call, mode: str | None) -> Answer:
        if call.path != "/api/chat.postMessage":
            return 404, {"ok": False, "error": "unknown_method"}, {}
        if mode == "429":
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        if mode == "refuse":
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if call.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if not call.body.get("channel"):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if not call.body.get("text"):
            return 200, {"ok": False, "error": "no_text"}, {}
        ts = f"1760000001.{self.accept(call.body):06d}"
        message = {"type": "message", "text": call.body["text"], "ts": ts, "bot_id": "B0BOT"}
        return 200, {"ok": True, "channel": call.body["channel"], "ts": ts, "message": message}, {}


class FakeDiscord(FakePlatform):
    """`PATCH /webhooks/{app}/{token}/messages/@original` and `POST /webhooks/{app}/{token}`."""

    def answer(self, call: Call, mode: str | None) -> Answer:
        match = re.fullmatch(r"/api/v10/webhooks/(\d+)/([^/]+)(/messages/@original)?", call.path)
        if match is None:
            return 404, {"message": "404: Not Found", "code": 0}, {}
        if mode == "429":
            body = {"message": "You are being rate limited.", "retry_after": 0.5, "global": False}
            return 429, body, {"Retry-After": "1"}
        if mode == "refuse":
            return 404, {"message": "Unknown Webhook", "code": 10015}, {}
        original = match.group(3) is not None
        if (call.method == "PATCH") != original:
            return 405, {"message": "405: Method Not Allowed", "code": 0}, {}
        content = call.body.get("content")
        if not isinstance(content, str) or len(content) > 2000:
            return 400, {"message": "Invalid Form Body", "code": 50035}, {}
        number = self.accept({"original": original, "token": match.group(2), **call.body})
        return 200, {"id": str(1400000000000000000 + number), "content": content, "type": 0}, {}


class FakeWhatsApp(FakePlatform):
    """`POST /v21.0/{phone-number-id}/messages` with a bearer access token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def answer(self, call: Call, mode: str | None) -> Answer:
        if re.fullmatch(r"/v21\.0/\d+/messages", call.path) is None:
            return 404, {"error": {"message": "Unknown path", "code": 100}}, {}
        if call.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": {"message": "Invalid OAuth access token.", "code": 190}}, {}
        if mode == "429":
            return 400, {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}, {}
        if mode == "refuse":
            return 400, {"error": {"message": "Re-engagement message", "code": 131047}}, {}
        body = call.body
        text = (body.get("text") or {}).get("body", "")
        if (
            body.get("messaging_product") != "whatsapp"
            or body.get("type") != "text"
            or not body.get("to")
        ):
            return 400, {"error": {"message": "Invalid parameter", "code": 100}}, {}
        if not text or len(text) > 4096:
            return 400, {"error": {"message": "Invalid parameter: text.body", "code": 100}}, {}
        number = self.accept({"path": call.path, **body})
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": f"wamid.OUT{number:04d}"}],
            },
            {},
        )

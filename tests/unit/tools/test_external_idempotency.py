"""An external tool's state-changing call carries a key stable across redeliveries of its step."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

from agent33.config import Settings
from agent33.tools.external import load_external
from agent33.tools.registry import ToolContext
from tests.integration.tools.servers import serving

TOOL = """
name: create_ticket
description: Opens a ticket.
parameters:
  type: object
  required: [title]
  properties: {{title: {{type: string}}}}
http:
  url: "{base}/tickets"
  method: POST
  json: {{title: "{{{{ arguments.title }}}}"}}
"""


class Tickets(BaseHTTPRequestHandler):
    keys: ClassVar[list[str | None]] = []

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Tickets.keys.append(self.headers.get("Idempotency-Key"))
        body = json.dumps({"id": len(Tickets.keys)}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_same_call_of_the_same_step_sends_the_same_key(tmp_path: Path) -> None:
    settings = Settings().replace(http_allowlist=("127.0.0.1",), http_allow_private=True)
    with serving(Tickets) as server:
        (tmp_path / "tools").mkdir()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "tools" / "create_ticket.yaml").write_text(TOOL.format(base=base))
        tool = load_external(tmp_path)["create_ticket"]
        step = ToolContext(settings=settings, run_id="run-1", step_id="ask")
        Tickets.keys.clear()
        tool({"title": "disk full"}, step)
        tool({"title": "disk full"}, step)  # the step redelivered: the model asks again
        tool({"title": "cpu hot"}, step)  # another call of the same step
        tool({"title": "disk full"}, ToolContext(settings=settings, run_id="run-2", step_id="ask"))
        tool({"title": "disk full"}, ToolContext(settings=settings))  # a chat: no run, no key
    first, again, other, other_run, chat = Tickets.keys
    assert first and first == again
    assert other and other != first and other_run and other_run != first
    assert chat is None

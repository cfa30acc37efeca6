"""A workflow's `{{ secrets.X }}` header does not follow a redirect to another origin.

Through the real broker and worker: the step renders the secret into headers, the first local
server redirects to a second one (another port, so another origin), which records what it got.
The unit attacks are in tests/unit/security/test_http_redirects.py; this checks the runner hands
the resolved secrets to `http_request`, so an innocently named header carrying one is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.vault import set_secret, vault_for
from tests.integration.engine.helpers import start, steps_of, wait_for

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db", "celery_worker")]

PLAINTEXT = "tok-5e0c1d77-stays-home"


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.send_response(302 if parts.path == "/to" else 200)
        if parts.path == "/to":
            self.send_header("Location", parse_qs(parts.query)["u"][0])
        else:
            port = cast(ThreadingHTTPServer, self.server).server_port
            Recorder.seen.append((port, {k.lower(): v for k, v in self.headers.items()}))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Recorder) for _ in range(2)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers[0].server_port, servers[1].server_port
    for server in servers:
        server.shutdown()
        server.server_close()


def _workflow(url: str) -> dict[str, Any]:
    return {
        "name": "test_http_secret_redirect",
        "version": 1,
        "steps": [
            {
                "id": "call",
                "action": "http_request",
                "with": {
                    "url": url,
                    "timeout": 5,
                    "headers": {
                        "Authorization": "Bearer {{ secrets.API_TOKEN }}",
                        "X-Upstream": "{{ secrets.API_TOKEN }}",
                        "X-Trace": "t-1",
                    },
                },
            }
        ],
    }


@pytest.mark.parametrize("cross", [True, False])
def test_secret_headers_stay_on_their_origin(
    settings: Settings, ports: tuple[int, int], cross: bool
) -> None:
    Recorder.seen.clear()
    with session_scope() as session:
        set_secret(session=session, vault=vault_for(settings), name="API_TOKEN", value=PLAINTEXT)
    a, b = ports
    target = f"http://127.0.0.1:{b if cross else a}/collect"
    run = wait_for(start(_workflow(f"http://127.0.0.1:{a}/to?u={quote(target, safe='')}")))
    assert run.state == "succeeded", run.error
    assert steps_of(run)["call"].output["url"] == target
    [(port, headers)] = Recorder.seen
    assert headers["x-trace"] == "t-1"
    if cross:
        assert port == b and "authorization" not in headers and "x-upstream" not in headers
        assert not any(PLAINTEXT in value for value in headers.values())
    else:  # same origin: the step's credentials arrive as written
        assert headers["authorization"] == f"Bearer {PLAINTEXT}"
        assert headers["x-upstream"] == PLAINTEXT

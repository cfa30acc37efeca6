"""Credentials never follow a redirect to another origin (issue 9, item 7).

Two real servers on 127.0.0.1 with different ports are two origins; `localhost` and `127.0.0.1`
on one port are two more. The first answers redirects, the second records every request it gets:
after a cross-origin hop, no credential header (by name, or by carrying a `{{ secrets.X }}`
value) and no cookie may reach it. Same-origin redirects keep the headers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from agent33.config import Settings
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions import http as http_action
from agent33.security import outbound
from agent33.security.vault import SecretValues, vault_for
from agent33.tools import ToolContext, ToolError, get_tool

pytestmark = pytest.mark.security

PLAINTEXT = "s3cr3t-7f1c2a90-do-not-forward"
CREDENTIALS = {
    "Authorization": "Bearer tok-auth",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
    "Cookie": "session=abc123",
    "X-API-Key": "key-123",
    "X-Auth-Token": "tok-xauth",
    "X-Session-Id": "sess-1",
    "Api-Key": "key-456",
    "X-Client-Secret": "cs-1",
    "X-Amz-Security-Token": "amz-1",
    "X-Custom": f"prefix {PLAINTEXT}",  # an innocent name holding a secret's value
}
BENIGN = {"X-Trace": "t1", "Accept": "application/json"}


class Recorder(BaseHTTPRequestHandler):
    """Both servers: `/to?u=URL&s=STATUS` redirects, `/cookie?u=URL` sets a cookie and
    redirects, anything else records the request's headers and answers 200."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str, str, dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"ok")

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/to":
            self._answer(int(query.get("s", "302")), Location=query["u"])
        elif parts.path == "/cookie":
            self._answer(302, Location=query["u"], Set_Cookie="sid=from-server; Path=/")
        else:
            port = cast(ThreadingHTTPServer, self.server).server_port
            headers = {k.lower(): v for k, v in self.headers.items()}
            Recorder.seen.append((port, self.command, parts.path, headers))
            self._answer(200)

    do_GET = do_POST = do_PUT = do_HEAD = _route


def _serve() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_port


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    first, a = _serve()
    second, b = _serve()
    yield a, b
    for server in (first, second):
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _clear() -> None:
    Recorder.seen.clear()


def _call(
    params: dict[str, Any],
    *,
    secrets: dict[str, str] | None = None,
    allow: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Any:
    settings = Settings().replace(http_allowlist=allow, http_allow_private=True)
    values = SecretValues({}, [], lambda: vault_for(settings))  # never decrypts: preset below
    values.resolved.update(secrets or {})
    context = ActionContext(
        run_id="r",
        step_id="s",
        attempt=1,
        params={"timeout": 5, **params},
        settings=settings,
        context={"secrets": values},
    )
    return http_action.http_request(context)


def _hop(start: str, target: str, status: int = 302) -> str:
    return f"{start}/to?u={quote(target, safe='')}&s={status}"


def _received() -> dict[str, str]:
    assert len(Recorder.seen) == 1, Recorder.seen
    return Recorder.seen[0][3]


def _assert_no_credentials(received: dict[str, str]) -> None:
    for name in CREDENTIALS:
        assert name.lower() not in received, name
    assert not any(PLAINTEXT in value for value in received.values())
    assert "cookie" not in received
    for name, value in BENIGN.items():
        assert received[name.lower()] == value


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_cross_port_redirect_drops_every_credential(ports: tuple[int, int], status: int) -> None:
    a, b = ports
    target = f"http://127.0.0.1:{b}/collect"
    out = _call(
        {"url": _hop(f"http://127.0.0.1:{a}", target, status), "headers": CREDENTIALS | BENIGN},
        secrets={"TOKEN": PLAINTEXT},
    )
    assert out["status"] == 200 and out["url"] == target
    assert Recorder.seen[0][0] == b
    _assert_no_credentials(_received())


def test_cross_host_redirect_on_the_same_port_drops_them(ports: tuple[int, int]) -> None:
    a, _ = ports
    target = f"http://localhost:{a}/collect"
    _call(
        {"url": _hop(f"http://127.0.0.1:{a}", target, 307), "headers": CREDENTIALS | BENIGN},
        secrets={"TOKEN": PLAINTEXT},
    )
    _assert_no_credentials(_received())


def test_a_same_origin_redirect_keeps_them(ports: tuple[int, int]) -> None:
    a, _ = ports
    origin = f"http://127.0.0.1:{a}"
    _call(
        {"url": _hop(origin, f"{origin}/collect"), "headers": CREDENTIALS | BENIGN},
        secrets={"TOKEN": PLAINTEXT},
    )
    received = _received()
    for name, value in (CREDENTIALS | BENIGN).items():
        assert received[name.lower()] == value
    _call({"url": _hop(origin, "/collect"), "headers": {"Authorization": "Bearer rel"}})
    assert Recorder.seen[1][3]["authorization"] == "Bearer rel"  # relative Location: same origin


def test_once_dropped_they_stay_dropped_back_on_the_first_origin(ports: tuple[int, int]) -> None:
    """A -> B -> A: the second Location was chosen by B, so nothing comes back for A."""
    a, b = ports
    back = f"http://127.0.0.1:{a}/collect"
    via_b = _hop(f"http://127.0.0.1:{b}", back)
    _call(
        {"url": _hop(f"http://127.0.0.1:{a}", via_b), "headers": CREDENTIALS | BENIGN},
        secrets={"TOKEN": PLAINTEXT},
    )
    assert Recorder.seen[0][0] == a
    _assert_no_credentials(_received())


def test_a_server_set_cookie_is_not_replayed(ports: tuple[int, int]) -> None:
    a, b = ports
    for target in (f"http://127.0.0.1:{a}/collect", f"http://127.0.0.1:{b}/collect"):
        _call({"url": f"http://127.0.0.1:{a}/cookie?u={target}"})
    assert [seen[0] for seen in Recorder.seen] == [a, b]
    assert all("cookie" not in seen[3] for seen in Recorder.seen)


@pytest.mark.parametrize(
    "payload",
    [{"body": f"token={PLAINTEXT}"}, {"json": {"nested": [{"k": f"Bearer {PLAINTEXT}"}]}}],
)
def test_a_307_will_not_resend_a_body_holding_a_secret_elsewhere(
    ports: tuple[int, int], payload: dict[str, Any]
) -> None:
    a, b = ports
    url = _hop(f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}/collect", 307)
    with pytest.raises(ActionFailed, match="body holding a secret") as info:
        _call({"url": url, "method": "POST", **payload}, secrets={"TOKEN": PLAINTEXT})
    assert not info.value.retryable and Recorder.seen == []
    # Without a secret in it, the body follows the 307 like before; a 303 drops it anyway.
    _call({"url": url, "method": "POST", "body": "plain"}, secrets={"TOKEN": PLAINTEXT})
    see_other = _hop(f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}/collect", 303)
    _call({"url": see_other, "method": "POST", **payload}, secrets={"TOKEN": PLAINTEXT})
    assert [seen[1] for seen in Recorder.seen] == ["POST", "GET"]


def test_origins_compare_scheme_host_and_default_port() -> None:
    origin = outbound._origin
    assert origin("http://Example.com/x") == origin("http://example.com:80/y")
    assert origin("https://example.com/") == origin("https://EXAMPLE.com.:443/")
    assert origin("http://example.com/") != origin("https://example.com/")
    assert origin("http://example.com/") != origin("http://example.com:8080/")
    assert origin("http://example.com/") != origin("http://api.example.com/")


@pytest.mark.parametrize(
    ("name", "value", "dropped"),
    [
        ("Authorization", "x", True), ("proxy-authorization", "x", True), ("COOKIE", "x", True),
        ("X-Api-Key", "x", True), ("X-Goog-Api-Key", "x", True), ("X-Vault-Token", "x", True),
        ("X-Session", "x", True), ("Private-Token", "x", True), ("X-Password", "x", True),
        ("X-Hub-Signature-256", "x", True), ("X-Trace", f"a{PLAINTEXT}b", True),
        ("X-Trace", "x", False), ("Content-Type", "text/plain", False), ("Accept", "*/*", False),
    ],
)  # fmt: skip
def test_credential_header_rule(name: str, value: str, dropped: bool) -> None:
    assert outbound.is_credential_header(name, value, (PLAINTEXT,)) is dropped


@pytest.mark.parametrize(
    "target",
    ["http://169.254.170.2/v2/credentials", "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
     "http://100.100.100.200/latest/meta-data/"],
)  # fmt: skip
def test_a_redirect_to_metadata_is_refused_with_private_allowed(
    ports: tuple[int, int], target: str
) -> None:
    a, _ = ports
    allow = ("127.0.0.1", "169.254.170.2", "::ffff:a9fe:a9fe", "100.100.100.200")
    with pytest.raises(ActionFailed, match="cloud metadata") as info:
        _call({"url": _hop(f"http://127.0.0.1:{a}", target)}, allow=allow)
    assert not info.value.retryable


def test_memory_ingestion_fetch_uses_the_same_redirect_rules(ports: tuple[int, int]) -> None:
    """`fetch_document` shares the redirect loop: a hop to the metadata range is refused even
    with private addresses allowed, and a cross-origin hop is re-checked against the allowlist."""
    a, b = ports
    with pytest.raises(outbound.OutboundFailed, match="cloud metadata"):
        outbound.fetch_document(
            f"http://127.0.0.1:{a}/to?u=http://169.254.170.2/v2/credentials",
            allowlist=("127.0.0.1", "169.254.170.2"),
            allow_private=True,
        )
    with pytest.raises(outbound.OutboundFailed, match="not in the allowlist"):
        outbound.fetch_document(
            f"http://127.0.0.1:{a}/to?u=http://localhost:{b}/collect",
            allowlist=("127.0.0.1",),
            allow_private=True,
        )
    assert Recorder.seen == []


def test_the_http_get_tool_refuses_metadata_with_private_allowed(ports: tuple[int, int]) -> None:
    """A model-chosen URL, directly or through a redirect, never reaches a metadata service."""
    a, _ = ports
    allow = ("127.0.0.1", "169.254.169.254")
    context = ToolContext(
        settings=Settings().replace(http_allowlist=allow, http_allow_private=True)
    )
    tool = get_tool("http_get")
    imds = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    for url in (imds, _hop(f"http://127.0.0.1:{a}", imds)):
        with pytest.raises(ToolError, match="cloud metadata"):
            tool({"url": url}, context)
    assert Recorder.seen == []

"""`http_request` against a real local server: allowlist, manual redirects, errors and retries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from agent33.config import Settings
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions.http import http_request
from agent33.security.outbound import check_url, host_allowed

ALLOW = ("127.0.0.1", "localhost")


class Handler(BaseHTTPRequestHandler):
    """Routes by path; `/echo` answers with what it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain", **hdr: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in hdr.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode() if length else ""
        port = cast(ThreadingHTTPServer, self.server).server_port
        if path == "/json":
            self._send(200, b'{"ok": true, "n": [1, 2]}', "application/json; charset=utf-8")
        elif path == "/text":
            self._send(200, b"hello text")
        elif path in ("/fail", "/missing", "/busy"):
            self._send({"/fail": 500, "/missing": 404, "/busy": 429}[path], b"nope")
        elif path == "/redirect":
            self._send(302, Location="/json")
        elif path == "/redirect-away":
            self._send(302, Location="http://evil.example.net/steal")
        elif path == "/redirect-localhost":
            self._send(307, Location=f"http://localhost:{port}/echo")
        elif path == "/loop":
            self._send(302, Location="/loop")
        elif path == "/see-other":
            self._send(303, Location="/echo")
        elif path == "/slow":
            time.sleep(2)
            self._send(200, b"late")
        elif path == "/big":
            self._send(200, b"x" * (2 * 1024 * 1024))
        elif path == "/echo":
            seen = {
                "method": self.command,
                "query": query,
                "body": received,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            self._send(200, json.dumps(seen).encode(), "application/json")
        else:
            self._send(404)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call(params: dict[str, Any], allow: tuple[str, ...] = ALLOW) -> Any:
    settings = Settings().replace(http_allowlist=allow, http_allow_private=True)  # local server
    context = ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=settings)
    return http_request(context)


def _fails(params: dict[str, Any], allow: tuple[str, ...] = ALLOW) -> ActionFailed:
    with pytest.raises(ActionFailed) as info:
        _call(params, allow)
    return info.value


def test_json_is_parsed(base_url: str) -> None:
    out = _call({"url": f"{base_url}/json"})
    assert out["status"] == 200 and out["body"] == {"ok": True, "n": [1, 2]}
    assert out["url"] == f"{base_url}/json"
    assert out["headers"]["Content-Type"].startswith("application/json")
    assert isinstance(out["elapsed_ms"], int)


def test_text_and_head(base_url: str) -> None:
    assert _call({"url": f"{base_url}/text"})["body"] == "hello text"
    assert _call({"url": f"{base_url}/text", "method": "head"})["body"] == ""


def test_method_params_headers_and_json_are_sent(base_url: str) -> None:
    out = _call(
        {
            "url": f"{base_url}/echo",
            "method": "POST",
            "params": {"q": "a b"},
            "headers": {"X-Trace": "t1"},
            "json": {"k": [1]},
        }
    )
    body = out["body"]
    assert body["method"] == "POST" and body["query"] == "q=a+b"
    assert body["headers"]["x-trace"] == "t1" and json.loads(body["body"]) == {"k": [1]}
    raw = _call({"url": f"{base_url}/echo", "method": "PUT", "body": "plain"})["body"]
    assert raw["method"] == "PUT" and raw["body"] == "plain"


@pytest.mark.parametrize(
    ("path", "status", "retryable"),
    [("/fail", 500, True), ("/busy", 429, True), ("/missing", 404, False)],
)
def test_unexpected_statuses(base_url: str, path: str, status: int, retryable: bool) -> None:
    error = _fails({"url": f"{base_url}{path}"})
    assert f"unexpected status {status}" in str(error)
    assert error.retryable is retryable
    assert error.details["status"] == status and error.details["body"] == "nope"


def test_expect_status_accepts_listed_codes(base_url: str) -> None:
    assert _call({"url": f"{base_url}/missing", "expect_status": [404]})["status"] == 404
    error = _fails({"url": f"{base_url}/text", "expect_status": [201]})
    assert "unexpected status 200" in str(error) and not error.retryable


def test_a_redirect_within_the_allowlist_is_followed(base_url: str) -> None:
    out = _call({"url": f"{base_url}/redirect"})
    assert out["status"] == 200 and out["url"] == f"{base_url}/json" and out["body"]["ok"]
    kept = _call({"url": f"{base_url}/redirect", "expect_status": [302]})
    assert kept["status"] == 302


def test_a_redirect_cannot_escape_the_allowlist(base_url: str) -> None:
    error = _fails({"url": f"{base_url}/redirect-away"})
    assert "'evil.example.net'" in str(error) and "AGENT33_HTTP_ALLOWLIST" in str(error)
    assert not error.retryable


def test_redirect_loops_stop(base_url: str) -> None:
    assert "too many redirects" in str(_fails({"url": f"{base_url}/loop"}))


def test_see_other_becomes_get_without_a_body(base_url: str) -> None:
    body = _call({"url": f"{base_url}/see-other", "method": "POST", "json": {"a": 1}})["body"]
    assert body["method"] == "GET" and body["body"] == ""


def test_credentials_are_not_forwarded_to_another_host(base_url: str) -> None:
    params = {
        "url": f"{base_url}/redirect-localhost",
        "method": "POST",
        "body": "kept",
        "headers": {"Authorization": "Bearer secret", "X-Other": "1"},
    }
    body = _call(params)["body"]
    assert body["method"] == "POST" and body["body"] == "kept"  # 307 keeps method and body
    assert "authorization" not in body["headers"] and body["headers"]["x-other"] == "1"


def test_a_slow_server_times_out_retryably(base_url: str) -> None:
    started = time.monotonic()
    error = _fails({"url": f"{base_url}/slow", "timeout": 0.3})
    assert time.monotonic() - started < 1.5
    assert "timed out after 0.3s" in str(error) and error.retryable


def test_connection_errors_are_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = _fails({"url": f"http://127.0.0.1:{port}/"})
    assert "could not connect" in str(error) and error.retryable


def test_a_large_body_is_truncated(base_url: str) -> None:
    body = _call({"url": f"{base_url}/big"})["body"]
    assert body.startswith("xxx") and body.endswith("[... truncated at 1 MiB ...]")
    assert len(body) < 1024 * 1024 + 100


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://example.org/", "host 'example.org' is not in the allowlist"),
        ("http://127.0.0.1@evil.com/", "credentials"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http://evil.com#@127.0.0.1/", "host 'evil.com'"),
        ("http://evil.com\\@127.0.0.1/", "credentials"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://127.0.0.1/", "only http and https"),
        ("http://127.0.0.1:99999/", "invalid port"),
        ("http:///path", "no host"),
    ],
)
def test_urls_outside_the_rules_are_refused(url: str, needle: str) -> None:
    error = _fails({"url": url})
    assert needle in str(error) and not error.retryable


def test_allowlist_matching() -> None:
    allow = ("example.com", "Bücher.example", "10.0.0.1")
    assert host_allowed("example.com", allow) and host_allowed("api.v2.example.com", allow)
    assert not host_allowed("badexample.com", allow)
    assert not host_allowed("example.com.evil.org", allow)
    assert not host_allowed("x.10.0.0.1", allow)
    assert check_url("http://EXAMPLE.com./x", allow) == "example.com"
    assert check_url("https://www.BÜCHER.example/", allow) == "www.xn--bcher-kva.example"
    assert check_url("http://[::1]:8/", ("::1",)) == "::1"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "url must be"),
        ({"url": "http://127.0.0.1/", "method": "TRACE"}, "method must be one of"),
        ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "either json or body"),
        ({"url": "http://127.0.0.1/", "timeout": 301}, "timeout must be between"),
        ({"url": "http://127.0.0.1/", "expect_status": 200}, "expect_status must be"),
        ({"url": "http://127.0.0.1/", "headers": {"A": [1]}}, "headers.A must be a string"),
        ({"url": "http://127.0.0.1/", "data": "x"}, "unknown parameter(s) data"),
    ],
)
def test_bad_params_are_refused(params: dict[str, Any], needle: str) -> None:
    assert needle in str(_fails(params))


def _sent_key(base_url: str, method: str, run: str, step: str, **params: Any) -> str | None:
    settings = Settings().replace(http_allowlist=ALLOW, http_allow_private=True)
    context = ActionContext(
        run_id=run,
        step_id=step,
        attempt=1,
        params={"url": f"{base_url}/echo", "method": method, **params},
        settings=settings,
    )
    headers: dict[str, str] = http_request(context)["body"]["headers"]
    return headers.get("idempotency-key")


def test_a_state_changing_call_carries_the_steps_idempotency_key(base_url: str) -> None:
    """Every attempt and redelivery of one step sends the same key; another step, another key."""
    first = _sent_key(base_url, "POST", "run-1", "charge")
    assert first and first == _sent_key(base_url, "POST", "run-1", "charge")
    assert _sent_key(base_url, "PUT", "run-1", "charge") == first
    assert _sent_key(base_url, "POST", "run-1", "refund") not in (None, first)
    assert _sent_key(base_url, "POST", "run-2", "charge") not in (None, first)
    assert _sent_key(base_url, "GET", "run-1", "charge") is None  # GET changes nothing
    mine = {"headers": {"idempotency-key": "order-77"}}
    assert _sent_key(base_url, "POST", "run-1", "charge", **mine) == "order-77"

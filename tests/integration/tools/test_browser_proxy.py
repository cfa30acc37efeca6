"""The browser's policy proxy on its own: what Chromium's traffic meets, tunnels included."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from agent33.tools.browser_proxy import REFUSED_HEADER, PolicyProxy
from tests.integration.tools.servers import serving


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302 if self.path == "/moved" else 200)
        self.send_header("Location", "http://elsewhere.example/")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving(Hello) as server:
        yield server.server_port


def _exchange(proxy: PolicyProxy, request: bytes, then: bytes = b"") -> bytes:
    """Send raw bytes to the proxy; after a tunnel opens, send `then` through it."""
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        head = sock.recv(65536)
        if then and head.startswith(b"HTTP/1.1 200"):
            sock.sendall(then)
        received = head
        while chunk := sock.recv(65536):
            received += chunk
            if then and received.endswith(b"hello"):
                break
        return received


def test_plain_http_is_forwarded_without_following_redirects(port: int) -> None:
    with PolicyProxy(("127.0.0.1",), allow_private=True, timeout=5) as proxy:
        ok = _exchange(proxy, f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        moved = _exchange(
            proxy, f"GET http://127.0.0.1:{port}/moved HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"hello")
    assert b"Set-Cookie: a=1\r\n" in ok and b"Set-Cookie: b=2\r\n" in ok  # both kept
    assert moved.startswith(b"HTTP/1.1 302") and b"Location: http://elsewhere.example/" in moved


@pytest.mark.parametrize(
    ("allowlist", "allow_private", "reason"),
    [
        (("example.com",), True, b"is not in the allowlist"),
        (("127.0.0.1",), False, b"loopback, private or link-local"),
    ],
)
def test_refusals_answer_403_with_the_reason(
    port: int, allowlist: tuple[str, ...], allow_private: bool, reason: bytes
) -> None:
    with PolicyProxy(allowlist, allow_private=allow_private, timeout=5) as proxy:
        plain = _exchange(proxy, f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n".encode())
        tunnel = _exchange(proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        assert proxy.refusal(f"127.0.0.1:{port}") is not None
    for answer in (plain, tunnel):
        assert answer.startswith(b"HTTP/1.1 403") and REFUSED_HEADER.encode() in answer
        assert reason in answer


def test_an_allowed_tunnel_reaches_the_checked_address(port: int) -> None:
    with PolicyProxy(("127.0.0.1",), allow_private=True, timeout=5) as proxy:
        answer = _exchange(
            proxy,
            f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode(),
            then=b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        assert proxy.refusal(f"127.0.0.1:{port}") is None
    assert answer.startswith(b"HTTP/1.1 200 Connection Established") and answer.endswith(b"hello")


def test_an_oversized_request_body_is_refused_before_it_is_read(port: int) -> None:
    with PolicyProxy(("127.0.0.1",), allow_private=True, timeout=5) as proxy:
        head = f"POST http://127.0.0.1:{port}/ HTTP/1.1\r\nContent-Length: {60 * 2**20}\r\n\r\n"
        answer = _exchange(proxy, head.encode())
    assert answer.startswith(b"HTTP/1.1 403") and b"request body over 50 MiB" in answer

"""A per-call HTTP proxy that holds Chromium to the outbound policy (`agent33.security.outbound`).

Route interception alone cannot do it: Chromium follows redirects, opens WebSockets and
preconnects without asking the route handler, and resolves names itself (so a name checked by
the handler can be re-pointed before Chromium connects). Every byte Chromium sends therefore
goes through this proxy, on 127.0.0.1, for the length of one tool call:

- plain HTTP is forwarded with the shared pinned session (allowlist, address check at connect
  time, no redirect following: each hop comes back to Chromium and through here again);
- CONNECT (HTTPS, WebSockets, preconnects) is allowed only to an allowlisted host whose every
  address passes the network policy, and the tunnel connects to one of those checked addresses.

A refusal answers 403 with `X-Agent33-Refused` and is recorded, so the tool can name it; nothing
is cached and every connection closes after one exchange.
"""

from __future__ import annotations

import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError

from agent33.security.network import BlockedAddress, _PinnedMixin
from agent33.security.outbound import SESSIONS, OutboundFailed, check_destination, check_url

REFUSED_HEADER = "X-Agent33-Refused"
MAX_BODY = 50 * 1024 * 1024  # per request and response; a larger response is cut short
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, allowlist: tuple[str, ...], allow_private: bool, timeout: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.allowlist = allowlist
        self.allow_private = allow_private
        self.io_timeout = timeout
        self.refusals: dict[str, str] = {}  # target (URL, or host:port for CONNECT) -> reason
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client or server hanging up mid-exchange is routine when a call ends."""

    def track(self, sock: socket.socket, add: bool = True) -> None:
        with self.lock:
            (self.sockets.add if add else self.sockets.discard)(sock)


class PolicyProxy:
    """Start with `with PolicyProxy(...) as proxy:`; Chromium uses `proxy.url`."""

    def __init__(self, allowlist: tuple[str, ...], *, allow_private: bool, timeout: float) -> None:
        self._server = _Server(allowlist, allow_private, timeout)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def refusal(self, target: str) -> str | None:
        """Why `target` (a URL, or `host:port` for a tunnel) was refused; None if it was not."""
        with self._server.lock:
            return self._server.refusals.get(target)

    def __enter__(self) -> PolicyProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop accepting, then cut every open connection (a tunnel must not outlive the call)."""
        self._server.shutdown()
        with self._server.lock:
            for sock in self._server.sockets:
                _close(sock)
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.io_timeout)
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: refusals are reported by the tool, not on stderr."""

    def _refuse(self, target: str, reason: str) -> None:
        with self.server.lock:
            self.server.refusals[target] = reason
        body = f"refused by the browser policy: {reason}\n".encode()
        self.send_response(403)
        self.send_header(REFUSED_HEADER, reason.replace("\r", " ").replace("\n", " ")[:500])
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if not host or not port.isdigit():
            self._refuse(self.path, "CONNECT needs host:port")
            return
        try:
            check_url(f"https://{host}:{port}/", self.server.allowlist)
            upstream = _connect_checked(host.strip("[]"), int(port), self.server)
        except OutboundFailed as exc:
            self._refuse(self.path, exc.message)
            return
        except BlockedAddress as exc:
            self._refuse(self.path, str(exc))
            return
        except (HTTPError, OSError) as exc:  # unreachable: not a refusal, a failed connection
            self.send_error(502, f"could not connect: {type(exc).__name__}")
            self.close_connection = True
            return
        self.server.track(upstream)
        try:
            self.send_response(200, "Connection Established")
            self.end_headers()
            _pipe(self.connection, upstream, self.server.io_timeout)
        finally:
            self.server.track(upstream, add=False)
            _close(upstream)
            self.close_connection = True

    def _forward(self) -> None:
        url = self.path
        try:
            check_destination(url, self.server.allowlist, allow_private=self.server.allow_private)
        except OutboundFailed as exc:
            self._refuse(url, exc.message)
            return
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isdigit() else MAX_BODY + 1
        if length > MAX_BODY:  # the body is held in memory: a page must not exhaust it
            self._refuse(url, f"request body over {MAX_BODY // (1024 * 1024)} MiB or unreadable")
            return
        body = self.rfile.read(length) if length > 0 else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        session = SESSIONS[self.server.allow_private]
        try:
            response = session.request(
                self.command,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                stream=True,
                timeout=self.server.io_timeout,
            )
        except BlockedAddress as exc:
            self._refuse(url, str(exc))
            return
        except requests.RequestException as exc:
            self.send_error(502, f"could not fetch: {type(exc).__name__}")
            self.close_connection = True
            return
        with response:
            self._relay(response)

    def _relay(self, response: requests.Response) -> None:
        """Status, end-to-end headers (repeated ones kept) and the raw body; then close."""
        self.send_response(response.status_code, response.reason)
        for name, value in response.raw.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        sent = 0
        for chunk in response.raw.stream(65536, decode_content=False):
            self.wfile.write(chunk)
            sent += len(chunk)
            if sent > MAX_BODY:
                break

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward


def _connect_checked(host: str, port: int, server: _Server) -> socket.socket:
    """A socket to an address `check_host` approved, peer re-checked: the very connection class
    the HTTP tools' pinned sessions use, so tunnels follow the same address rules."""
    attrs = {"allow_private": server.allow_private}
    tunnel = type("PinnedTunnel", (_PinnedMixin, HTTPConnection), attrs)
    sock: socket.socket = tunnel(host, port, timeout=server.io_timeout)._new_conn()
    return sock


def _pipe(client: socket.socket, upstream: socket.socket, timeout: float) -> None:
    """Copy bytes both ways until one side closes, fails or stays silent for `timeout`."""
    peers = {client: upstream, upstream: client}
    while True:
        readable, _, _ = select.select(list(peers), [], [], timeout)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)
            except OSError:
                return


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

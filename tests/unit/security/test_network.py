"""SSRF guard: addresses refused by default, DNS answers checked, redirects and rebinding caught.

A local server counts its hits: every refused request must leave it at zero (RELIABILITY.md,
"SSRF"). Host names other than `localhost` resolve through an injected resolver - no real DNS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent33.config import ConfigError, Settings, load_settings
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions import http as http_action
from agent33.security import network, outbound
from agent33.security.network import BlockedAddress, blocked_reason, check_host

pytestmark = pytest.mark.security


class Sink(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Sink.hits.append(self.path)
        status = 302 if self.path == "/hop" else 200
        self.send_response(status)
        if status == 302:
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/target")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _clear_hits() -> None:
    Sink.hits.clear()


def _resolver(table: dict[str, list[str]]) -> Callable[..., list[tuple[Any, ...]]]:
    """A getaddrinfo stand-in; each call pops the next answer when several are listed."""

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        answers = table[host]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


def _call(url: str, allow: tuple[str, ...], *, allow_private: bool = False) -> Any:
    settings = Settings().replace(http_allowlist=allow, http_allow_private=allow_private)
    params = {"url": url, "timeout": 5}
    context = ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=settings)
    return http_action.http_request(context)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.5.4", "192.168.1.1",
        "100.64.0.1", "169.254.169.254", "169.254.1.1", "fd00:ec2::254", "fc00::1", "fe80::1",
        "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255", "::ffff:127.0.0.1",
        "::ffff:7f00:1", "2002:7f00:1::", "198.18.0.1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass_and_allow_private_opens_only_local_ranges() -> None:
    for address in ("93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"):
        assert blocked_reason(ipaddress.ip_address(address)) is None
    for address in ("127.0.0.1", "::1", "10.1.2.3", "fd12::1", "::ffff:192.168.0.1"):
        assert blocked_reason(ipaddress.ip_address(address), allow_private=True) is None
    for address in ("169.254.169.254", "fd00:ec2::254", "0.0.0.0", "224.0.0.1"):
        assert blocked_reason(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1", "0x7f000001", "2130706433",
             "017700000001", "127.1", "[::ffff:127.0.0.1]", "localhost"],
)  # fmt: skip
def test_http_request_refuses_private_destinations_before_connecting(host: str, port: int) -> None:
    bare = host.strip("[]")
    with pytest.raises(ActionFailed, match="refusing") as info:
        _call(f"http://{host}:{port}/secret", (bare,))
    assert info.value.retryable is False and "AGENT33_HTTP_ALLOW_PRIVATE" in info.value.message
    assert Sink.hits == []


def test_a_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "RESOLVER", _resolver({"innocent.test": ["127.0.0.1"]}))
    with pytest.raises(BlockedAddress, match="127.0.0.1"):
        check_host("innocent.test", 80, allow_private=False)


def test_every_answer_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def two(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(network, "RESOLVER", two)
    with pytest.raises(BlockedAddress, match="10.0.0.7"):
        check_host("mixed.test", 80, allow_private=False)


def test_dns_rebinding_after_the_check_is_caught_at_connect(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """First answer public (passes the pre-check), second 127.0.0.1 (the connection's)."""
    table = {"rebind.test": ["93.184.216.34", "127.0.0.1"]}
    monkeypatch.setattr(network, "RESOLVER", _resolver(table))
    with pytest.raises(ActionFailed, match=r"refusing .*127\.0\.0\.1"):
        _call(f"http://rebind.test:{port}/secret", ("rebind.test",))
    assert Sink.hits == []


def test_the_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """With private addresses allowed, a name only the injected resolver knows still works."""
    monkeypatch.setattr(network, "RESOLVER", _resolver({"svc.test": ["127.0.0.1"]}))
    result = _call(f"http://svc.test:{port}/ok", ("svc.test",), allow_private=True)
    assert result["status"] == 200 and Sink.hits == ["/ok"]


def test_redirect_check_refuses_a_private_target() -> None:
    with pytest.raises(outbound.OutboundFailed, match="refusing"):
        outbound.check_destination("http://127.0.0.1/x", ("127.0.0.1",), allow_private=False)
    with pytest.raises(outbound.OutboundFailed, match="not in the allowlist"):
        outbound.check_destination("http://evil.test/", ("127.0.0.1",), allow_private=False)


def test_a_redirect_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The first hop stands in for an allowed public host: only it skips the address check."""
    real = outbound.check_destination
    calls: list[str] = []

    def first_hop_public(url: str, allow: tuple[str, ...], *, allow_private: bool) -> str:
        calls.append(url)
        return real(url, allow, allow_private=allow_private or len(calls) == 1)

    monkeypatch.setattr(outbound, "check_destination", first_hop_public)
    monkeypatch.setitem(outbound.SESSIONS, False, outbound.SESSIONS[True])
    with pytest.raises(ActionFailed, match="refusing 'http://127.0.0.1"):
        _call(f"http://127.0.0.1:{port}/hop", ("127.0.0.1",))
    assert Sink.hits == ["/hop"] and len(calls) == 2  # /target was never requested


def test_allow_private_setting_parses_booleans() -> None:
    assert load_settings({}, dotenv_path=None).http_allow_private is False
    for raw, expected in (("true", True), ("YES", True), ("1", True), ("no", False), ("0", False)):
        env = {"AGENT33_HTTP_ALLOW_PRIVATE": raw}
        assert load_settings(env, dotenv_path=None).http_allow_private is expected
    with pytest.raises(ConfigError, match="AGENT33_HTTP_ALLOW_PRIVATE"):
        load_settings({"AGENT33_HTTP_ALLOW_PRIVATE": "maybe"}, dotenv_path=None)


METADATA_ADDRESSES = [
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack IMDS
    "169.254.170.2",  # ECS task credentials
    "169.254.170.23",  # EKS Pod Identity
    "169.254.0.1",  # anything else link-local
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # EKS Pod Identity over IPv6
    "168.63.129.16",  # Azure wire server (a public address)
    "100.100.100.200",  # Alibaba
    "192.0.0.192",  # Oracle
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:aa02",  # IPv4-mapped ECS, hex spelling
    "2002:a9fe:a9fe::",  # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo embedding 169.254.169.254
    "64:ff9b::a9fe:aa02",  # NAT64 well-known prefix -> ECS
    "64:ff9b:1::a83f:8110",  # NAT64 local-use prefix -> Azure wire server
]


@pytest.mark.parametrize("address", METADATA_ADDRESSES)
def test_metadata_addresses_are_refused_in_every_mode(address: str) -> None:
    ip = ipaddress.ip_address(address)
    for allow_private in (False, True):
        reason = blocked_reason(ip, allow_private=allow_private)
        assert reason is not None and "metadata" in reason, (address, reason)


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.google.internal.", "metadata.goog", "metadata",
             "instance-data", "instance-data.ec2.internal", "metadata.azure.com"],
)  # fmt: skip
def test_metadata_names_are_refused_before_resolving(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Even if a local resolver points the name somewhere harmless, it is never contacted."""
    monkeypatch.setattr(network, "RESOLVER", _resolver({host: ["127.0.0.1"]}))
    with pytest.raises(BlockedAddress, match="metadata"):
        check_host(host, 80, allow_private=True)


@pytest.mark.parametrize("url", ["http://169.254.170.2/v2/credentials",
                                 "http://[::ffff:169.254.170.2]/v2/credentials",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "http://[fd00:ec2::254]/latest/meta-data/",
                                 "http://100.100.100.200/latest/meta-data/"])  # fmt: skip
def test_http_request_refuses_metadata_with_private_allowed(url: str) -> None:
    host = url.split("/")[2].strip("[]")
    with pytest.raises(ActionFailed, match="cloud metadata") as info:
        _call(url, (host,), allow_private=True)
    assert info.value.retryable is False


def test_a_name_rebinding_to_ecs_credentials_is_caught_at_connect(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """With private addresses allowed: first answer loopback (passes), then the ECS address."""
    monkeypatch.setattr(
        network, "RESOLVER", _resolver({"svc.test": ["127.0.0.1", "169.254.170.2"]})
    )
    with pytest.raises(ActionFailed, match=r"169\.254\.170\.2.*cloud metadata"):
        _call(f"http://svc.test:{port}/secret", ("svc.test",), allow_private=True)
    assert Sink.hits == []


def test_each_redirect_target_check_refuses_metadata_with_private_allowed() -> None:
    """`check_destination` runs on every Location: listing the address does not open it."""
    with pytest.raises(outbound.OutboundFailed, match="cloud metadata"):
        outbound.check_destination(
            "http://169.254.170.2/v2/credentials", ("169.254.170.2",), allow_private=True
        )

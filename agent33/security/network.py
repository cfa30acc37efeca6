"""SSRF guard for outbound HTTP: which IP addresses a step or tool may connect to.

A host allowlist alone is not enough: an allowed name can resolve (or be re-pointed by DNS
rebinding) to 127.0.0.1, the cloud metadata service or a private network, and numeric spellings
(`2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]`) bypass naive string checks. So every
host is resolved with `getaddrinfo` (which accepts all those spellings and yields the canonical
address) and **all** answers are checked (RELIABILITY.md, "SSRF").

Rebinding between check and connect is closed by checking at connect time: `pinned_session`
mounts an adapter whose urllib3 connection class resolves, checks every address, then connects
to one of exactly those checked addresses (the socket never re-resolves), and re-checks the
socket's peer address after connecting. TLS still verifies the certificate against the host
name, because urllib3 takes `server_hostname` from the URL's host, not from the pinned IP.

Cloud metadata services (`METADATA_NETWORKS`, `METADATA_HOSTS`: all of 169.254.0.0/16, AWS's
IPv6 address, Azure's wire server, Alibaba, Oracle, GCP's names) are refused in every mode,
AGENT33_HTTP_ALLOW_PRIVATE included, and through IPv4-mapped, 6to4, Teredo and NAT64 spellings.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Any
from urllib.request import Request

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

# Never reachable, even with AGENT33_HTTP_ALLOW_PRIVATE: cloud instance credentials live there.
# All of IPv4 link-local is included: AWS/GCP/Azure/OpenStack IMDS (169.254.169.254), ECS task
# credentials (169.254.170.2), EKS Pod Identity (169.254.170.23) and whatever the next provider
# puts there; nothing an agent needs lives in 169.254.0.0/16.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, ECS, EKS, GCP, Azure IMDS, OpenStack
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "fd00:ec2::23/128",  # EKS Pod Identity agent over IPv6
        "168.63.129.16/32",  # Azure wire server (a public address, so not caught as private)
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata (Python 3.11 calls it global)
    )
)
# Names of metadata services, refused before resolving (a local resolver may not know them,
# or may answer with a different address than the one the service listens on).
METADATA_HOSTS = frozenset(
    (
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.tencentyun.com",
    )
)
# Well-known NAT64 prefixes: a gateway translates them to the embedded IPv4 address.
NAT64_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))
# Reachable only with AGENT33_HTTP_ALLOW_PRIVATE (local development services).
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # CGNAT: ipaddress does not count it as private on 3.11
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)

# Tests replace this (no external DNS); production uses the system resolver.
RESOLVER: Resolver = socket.getaddrinfo


class BlockedAddress(Exception):
    """A destination resolves to an address outside policy.

    Deliberately not an OSError: urllib3 and requests would otherwise wrap it as a retryable
    connection error; it must surface as a refusal.
    """


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address, if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if any(ip in net for net in NAT64_NETWORKS):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why `ip` may not be contacted, or None when it may."""
    embedded = _embedded_v4(ip)
    if embedded is not None:
        reason = blocked_reason(embedded, allow_private=allow_private)
        return f"{reason} (embedded in {ip})" if reason else None
    if any(ip in net for net in METADATA_NETWORKS):
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in net for net in PRIVATE_NETWORKS) or ip.is_loopback or ip.is_link_local:
        return None if allow_private else "a loopback, private or link-local address"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        # Documentation, benchmarking, 0.0.0.0/8, 240/4, broadcast and similar ranges.
        return "a reserved or non-global address"
    return None


def resolve(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    name = host.strip("[]")
    try:
        answers = RESOLVER(name, port or 0, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedAddress(f"host {host!r} cannot be resolved ({exc})") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        ip = ipaddress.ip_address(str(answer[4][0]).split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise BlockedAddress(f"host {host!r} resolves to no address")
    return addresses


def check_host(host: str, port: int | None = None, *, allow_private: bool) -> list[IPAddress]:
    """Resolve `host` and return its addresses; refuse when any one is outside policy."""
    if host.strip("[]").lower().rstrip(".") in METADATA_HOSTS:
        raise BlockedAddress(f"host {host!r} is a cloud metadata service")
    addresses = resolve(host, port)
    for ip in addresses:
        reason = blocked_reason(ip, allow_private=allow_private)
        if reason:
            hint = "" if allow_private else "; AGENT33_HTTP_ALLOW_PRIVATE=true allows local ones"
            raise BlockedAddress(f"host {host!r} resolves to {ip}, {reason}{hint}")
    return addresses


class _PinnedMixin:
    """Resolve, check and connect to the checked address in one place (no rebinding window)."""

    allow_private = False
    _dns_host: str  # set by urllib3's HTTPConnection, which this is mixed into
    port: int

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port
        addresses = check_host(host, port, allow_private=self.allow_private)
        error: Exception | None = None
        for ip in addresses:
            self._dns_host = str(ip)
            try:
                sock: socket.socket = super()._new_conn()  # type: ignore[misc]
            except NewConnectionError as exc:
                error = exc
                continue
            finally:
                self._dns_host = host
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            reason = blocked_reason(peer, allow_private=self.allow_private)
            if reason:
                sock.close()
                raise BlockedAddress(f"connected peer {peer} for {host!r} is {reason}")
            return sock
        assert error is not None
        raise error


def _adapter(allow_private: bool) -> HTTPAdapter:
    attrs = {"allow_private": allow_private}
    http_conn = type("PinnedHTTPConnection", (_PinnedMixin, HTTPConnection), attrs)
    https_conn = type("PinnedHTTPSConnection", (_PinnedMixin, HTTPSConnection), attrs)
    http_pool = type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    return PinnedAdapter()


class _NoCookies(DefaultCookiePolicy):
    """A session is shared by every run: a cookie set for one must not reach another."""

    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


def pinned_session(*, allow_private: bool) -> requests.Session:
    """A session whose every connection (redirect hops included) passes `check_host`.

    It keeps no cookies and ignores proxy/netrc environment settings (a proxy would connect
    on our behalf and bypass the address check), so runs sharing it leak nothing to each other.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(_NoCookies())
    adapter = _adapter(allow_private)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

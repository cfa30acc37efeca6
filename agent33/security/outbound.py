"""Outbound HTTP policy and fetching, shared by the `http_request` action, the `http_get` tool
and memory URL ingestion, so all three follow exactly one set of rules.

Every URL, the first and each redirect's `Location`, is checked against AGENT33_HTTP_ALLOWLIST
before anything is sent, so a redirect cannot lead outside the list; redirects are followed by
hand. Then the host is resolved and every address checked (`agent33.security.network`):
loopback, private, link-local and other non-global addresses are refused unless
AGENT33_HTTP_ALLOW_PRIVATE is true; cloud metadata (all of 169.254.0.0/16 and the other
providers' addresses and names) never. The sessions connect only to the addresses they checked,
at connect time, so DNS rebinding between the check and the connection cannot reach an internal
service. The shared sessions keep no cookies and ignore proxy/netrc environment settings, so one
run cannot leak state or credentials into another.

A redirect to another origin (scheme, host or port differ) drops every credential header before
the next hop, and they stay dropped for the rest of the chain: `Authorization`,
`Proxy-Authorization`, `Cookie`, `X-API-Key`, any header whose name mentions a token, key, auth,
secret, session, password, credential or signature, and any header whose value holds a
`{{ secrets.X }}` plaintext. A 307/308 that would resend a body holding a secret to another origin
is refused. The name rule is deliberately broad (an `Idempotency-Key` is dropped too): a header
lost on a foreign hop costs a failed call, a leaked one costs the credential.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import idna
import requests
from urllib3.util import parse_url

from agent33.errors import Agent33Error
from agent33.security.network import BlockedAddress, check_host, pinned_session

DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 5
BODY_LIMIT = 1024 * 1024
DOCUMENT_LIMIT = 50 * 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}
CREDENTIAL_HEADERS = frozenset(
    ("authorization", "proxy-authorization", "cookie", "cookie2", "x-api-key", "x-csrf-token")
)
CREDENTIAL_NAME = re.compile(
    r"token|key|auth|secret|session|cookie|passw|credential|signature|csrf|xsrf", re.IGNORECASE
)

# Keyed by allow_private; no cookies, no proxy/netrc from the environment (see pinned_session).
SESSIONS = {flag: pinned_session(allow_private=flag) for flag in (False, True)}

Reader = Callable[[requests.Response, float, float], Any]


class OutboundFailed(Agent33Error):
    """A call was refused by policy or failed; `retryable` says whether trying again may help.

    Callers translate it into their own error (an action failure, a tool error, a document's
    ingestion error); the message names the URL or the rule.
    """

    code = "outbound_failed"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class OutboundRequest:
    """One call as its caller checked it; `secrets` are plaintexts that never cross origins."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    expect_status: tuple[int, ...] | None = None
    secrets: tuple[str, ...] = ()


IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_NAMESPACE = uuid.UUID("5b2b3b1e-6f0e-4a56-9c54-a33a33a33a33")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def idempotency_key(*parts: str) -> str:
    """A stable key for one side effect: the same parts (run, step, call) give the same key on
    every redelivery and retry, so a receiver that honours `Idempotency-Key` drops the repeat."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, "\x1f".join(parts)))


def with_idempotency_key(request: OutboundRequest, *parts: str) -> OutboundRequest:
    """The request with an `Idempotency-Key` header when its method changes state and the caller
    set none of its own (theirs wins, whatever its case)."""
    if request.method.upper() in _SAFE_METHODS or any(
        name.lower() == IDEMPOTENCY_HEADER.lower() for name in request.headers
    ):
        return request
    headers = {**request.headers, IDEMPOTENCY_HEADER: idempotency_key(*parts)}
    return replace(request, headers=headers)


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive, as the server sent them
    url: str  # after redirects
    body: Any


def normal_host(host: str) -> str:
    """Lower-case, no trailing dot, IDNA-encoded; IP addresses in their canonical form."""
    host = host.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        pass
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise OutboundFailed(f"host {host!r} is not a valid host name ({exc})") from None


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """Exact host, or a subdomain of an allowed domain name (never of an IP address)."""
    for entry in allowlist:
        allowed = normal_host(entry)
        if host == allowed:
            return True
        if not _is_ip(allowed) and host.endswith("." + allowed):
            return True
    return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, allowlist: tuple[str, ...]) -> str:
    """The normalised host; OutboundFailed unless `url` is http(s) to an allowed host without
    credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise OutboundFailed(f"only http and https URLs are allowed, got {url!r}")
    if "@" in parts.netloc or "\\" in parts.netloc:
        raise OutboundFailed(f"URLs with credentials (user@host) are not allowed, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise OutboundFailed(f"invalid port in {url!r}") from None
    if not parts.hostname:
        raise OutboundFailed(f"no host in {url!r}")
    host = normal_host(parts.hostname)
    if not host_allowed(host, allowlist):
        listed = ", ".join(allowlist) or "(empty)"
        raise OutboundFailed(
            f"host {host!r} is not in the allowlist (AGENT33_HTTP_ALLOWLIST: {listed})"
        )
    return host


def check_destination(url: str, allowlist: tuple[str, ...], *, allow_private: bool) -> str:
    """`check_url`, then refuse a host resolving to any address outside the network policy.

    Run for the first URL and for every redirect target, so a clear refusal comes before any
    byte is sent; the pinned session repeats the address check when it connects.
    """
    host = check_url(url, allowlist)
    try:
        check_host(host, urlsplit(url.strip()).port, allow_private=allow_private)
    except BlockedAddress as exc:
        raise OutboundFailed(f"refusing {url!r}: {exc}") from None
    return host


def read_limited(
    response: requests.Response, deadline: float, timeout: float, limit: int
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    data = bytearray()
    for chunk in response.iter_content(chunk_size=65536):
        data += chunk
        if len(data) > limit:
            break
        if time.monotonic() > deadline:
            raise OutboundFailed(f"timed out after {timeout:g}s", retryable=True)
    return bytes(data[:limit]), len(data) > limit


def read_body(response: requests.Response, deadline: float, timeout: float) -> Any:
    """JSON when the content type says so, else text; at most BODY_LIMIT bytes are read."""
    raw, truncated = read_limited(response, deadline, timeout, BODY_LIMIT)
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not truncated and (ctype == "application/json" or ctype.endswith("+json")) and raw:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    text = raw.decode(response.encoding or "utf-8", "replace")
    return text + "\n[... truncated at 1 MiB ...]" if truncated else text


def send(
    request: OutboundRequest,
    *,
    allowlist: tuple[str, ...],
    allow_private: bool,
    reader: Reader = read_body,
) -> Reply:
    """Make the call under the policy above; every failure is an OutboundFailed (network errors
    and timeouts retryable, refusals not). Any status is a Reply: the caller judges it."""
    try:
        response, url, body = _exchange(request, allowlist, allow_private, reader)
    except BlockedAddress as exc:  # raised at connect time: DNS changed after the check
        raise OutboundFailed(f"refusing {request.url!r}: {exc}") from None
    except requests.Timeout:
        raise OutboundFailed(f"timed out after {request.timeout:g}s", retryable=True) from None
    except requests.ConnectionError as exc:
        raise OutboundFailed(f"could not connect: {exc}", retryable=True) from None
    except requests.RequestException as exc:
        raise OutboundFailed(f"request failed: {exc}") from None
    return Reply(
        status=response.status_code,
        reason=response.reason or "",
        headers=response.headers,
        url=url,
        body=body,
    )


def _send_hop(
    request: OutboundRequest,
    url: str,
    method: str,
    first: bool,
    deadline: float,
    session: requests.Session,
) -> tuple[requests.PreparedRequest, requests.Response]:
    remaining = max(0.001, deadline - time.monotonic())
    resends = request.method == method
    prepared = session.prepare_request(
        requests.Request(
            method,
            url,
            headers=request.headers,
            params=request.params if first else None,
            json=request.json if resends else None,
            data=request.body.encode() if resends and request.body is not None else None,
        )
    )
    return prepared, session.send(
        prepared, allow_redirects=False, stream=True, timeout=min(remaining, request.timeout)
    )


def _exchange(
    request: OutboundRequest, allowlist: tuple[str, ...], allow_private: bool, reader: Reader
) -> tuple[requests.Response, str, Any]:
    """Send, following up to MAX_REDIRECTS redirects, each re-checked (allowlist and address)."""
    deadline = time.monotonic() + request.timeout
    url, method = request.url, request.method
    session = SESSIONS[allow_private]
    host = check_destination(url, allowlist, allow_private=allow_private)
    origin = _origin(url)
    for hop in range(MAX_REDIRECTS + 1):
        prepared, response = _send_hop(request, url, method, hop == 0, deadline, session)
        sent_host = normal_host(parse_url(prepared.url or "").host or "")
        if sent_host != host:  # what requests sent must be what we checked
            response.close()
            raise OutboundFailed(
                f"refusing {prepared.url!r}: host changed while preparing the request"
            )
        location = response.headers.get("Location")
        expected = response.status_code in (request.expect_status or ())
        if response.status_code not in REDIRECTS or not location or expected:
            with response:
                return response, prepared.url or url, reader(response, deadline, request.timeout)
        response.close()
        url = urljoin(prepared.url or url, location)
        host = check_destination(url, allowlist, allow_private=allow_private)
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
        if _origin(url) != origin:
            request = _without_credentials(request, url, resends_body=request.method == method)
            origin = _origin(url)
    raise OutboundFailed(
        f"too many redirects (more than {MAX_REDIRECTS}) starting at {request.url!r}"
    )


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, normalised host, port with the scheme's default filled in)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    return scheme, normal_host(parts.hostname or ""), parts.port or DEFAULT_PORTS[scheme]


def is_credential_header(name: str, value: str, secrets: tuple[str, ...] = ()) -> bool:
    """Whether a header may carry a credential: by its name, or by holding a secret's value."""
    lowered = name.strip().lower()
    if lowered in CREDENTIAL_HEADERS or CREDENTIAL_NAME.search(lowered):
        return True
    return any(secret in value for secret in secrets)


def _holds_secret(value: Any, secrets: tuple[str, ...]) -> bool:
    """Whether any string in `value` (keys included, through mappings and lists) holds a secret.

    Iterative, so a deeply nested body cannot raise RecursionError here.
    """
    pending = [value] if secrets else []
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if any(secret in item for secret in secrets):
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _without_credentials(
    request: OutboundRequest, url: str, *, resends_body: bool
) -> OutboundRequest:
    """The request for a hop to another origin: no credential header; no secret in a resent
    body."""
    if resends_body and _holds_secret([request.body, request.json], request.secrets):
        raise OutboundFailed(
            f"refusing to resend a body holding a secret to another origin ({url!r})"
        )
    headers = {
        name: value
        for name, value in request.headers.items()
        if not is_credential_header(name, value, request.secrets)
    }
    return replace(request, headers=headers)


@dataclass(frozen=True)
class FetchedDocument:
    data: bytes
    content_type: str
    url: str  # after redirects


def fetch_document(
    url: str,
    *,
    allowlist: tuple[str, ...],
    allow_private: bool,
    timeout: float = DEFAULT_TIMEOUT,
    limit: int = DOCUMENT_LIMIT,
) -> FetchedDocument:
    """GET a document's raw bytes (memory ingestion) under the same rules as every other call.
    Raises OutboundFailed with a message naming the URL."""

    def read(response: requests.Response, deadline: float, budget: float) -> bytes:
        raw, truncated = read_limited(response, deadline, budget, limit)
        if truncated:
            raise OutboundFailed(f"{url!r} is larger than {limit // (1024 * 1024)} MiB")
        return raw

    try:
        reply = send(
            OutboundRequest(url=url, timeout=timeout),
            allowlist=allowlist,
            allow_private=allow_private,
            reader=read,
        )
    except OutboundFailed as exc:
        if exc.retryable:  # network trouble: say which document it was
            raise OutboundFailed(
                f"could not fetch {url!r}: {exc.message}", retryable=True
            ) from None
        raise
    if not 200 <= reply.status < 300:
        raise OutboundFailed(f"fetching {url!r} answered {reply.status}")
    content_type = reply.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return FetchedDocument(data=reply.body, content_type=content_type, url=reply.url)

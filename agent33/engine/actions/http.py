"""`http_request`: call an allow-listed HTTP(S) host; redirects are followed by hand.

Every URL, the first and each redirect's `Location`, is checked against AGENT33_HTTP_ALLOWLIST
before anything is sent, so a redirect cannot lead a step outside the list. Then the host is
resolved and every address checked (`agent33.security.network`): loopback, private, link-local
and other non-global addresses are refused unless AGENT33_HTTP_ALLOW_PRIVATE is true; cloud
metadata (all of 169.254.0.0/16 and the other providers' addresses and names) never. The
sessions connect only to the addresses they checked, at connect time, so DNS rebinding between
the check and the connection cannot reach an internal service. The shared sessions keep no
cookies and ignore proxy/netrc environment settings, so one run cannot leak state or credentials
into another.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import idna
import requests
from urllib3.util import parse_url

from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.security.network import BlockedAddress, check_host, pinned_session

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
KNOWN = ("url", "method", "headers", "params", "json", "body", "timeout", "expect_status")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
MAX_REDIRECTS = 5
BODY_LIMIT = 1024 * 1024
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


@dataclass(frozen=True)
class Spec:
    url: str
    method: str
    headers: dict[str, str]
    params: dict[str, Any]
    json: Any
    body: str | None
    timeout: float
    expect_status: tuple[int, ...] | None
    # Plaintexts of the step's `{{ secrets.X }}`: headers carrying one never cross origins.
    secrets: tuple[str, ...] = ()


def _fail(message: str) -> ActionFailed:
    return ActionFailed(f"http_request: {message}", retryable=False)


def _strings(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(f"{name} must be a mapping of names to strings")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _fail(f"{name}.{key} must be a string")
        out[key] = str(item)
    return out


def parse(params: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> Spec:
    """Check the `with:` mapping; every problem names the parameter."""
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        raise _fail(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise _fail("url must be a non-empty string")
    method = str(params.get("method") or "GET").upper()
    if method not in METHODS:
        raise _fail(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _fail("timeout must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _fail(f"timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got {timeout}")
    body = params.get("body")
    if body is not None and not isinstance(body, str):
        raise _fail("body must be a string (use `json:` for structured data)")
    if body is not None and params.get("json") is not None:
        raise _fail("give either json or body, not both")
    expect = params.get("expect_status")
    if expect is not None and (
        not isinstance(expect, list)
        or not expect
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in expect)
    ):
        raise _fail("expect_status must be a non-empty list of status codes")
    query = params.get("params") or {}
    if not isinstance(query, Mapping):
        raise _fail("params must be a mapping")
    return Spec(
        url=url,
        method=method,
        headers=_strings(params.get("headers"), "headers"),
        params=dict(query),
        json=params.get("json"),
        body=body,
        timeout=float(timeout),
        expect_status=tuple(expect) if expect is not None else None,
        secrets=tuple(sorted({value for value in secrets if value})),
    )


def _normal_host(host: str) -> str:
    """Lower-case, no trailing dot, IDNA-encoded; IP addresses in their canonical form."""
    host = host.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        pass
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise _fail(f"host {host!r} is not a valid host name ({exc})") from None


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """Exact host, or a subdomain of an allowed domain name (never of an IP address)."""
    for entry in allowlist:
        allowed = _normal_host(entry)
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
    """Raise ActionFailed unless `url` is http(s) to an allowed host without credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail(f"only http and https URLs are allowed, got {url!r}")
    if "@" in parts.netloc or "\\" in parts.netloc:
        raise _fail(f"URLs with credentials (user@host) are not allowed, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise _fail(f"invalid port in {url!r}") from None
    if not parts.hostname:
        raise _fail(f"no host in {url!r}")
    host = _normal_host(parts.hostname)
    if not host_allowed(host, allowlist):
        listed = ", ".join(allowlist) or "(empty)"
        raise ActionFailed(
            f"host {host!r} is not in the allowlist (AGENT33_HTTP_ALLOWLIST: {listed})",
            retryable=False,
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
        raise _fail(f"refusing {url!r}: {exc}") from None
    return host


def _read_raw(
    response: requests.Response, deadline: float, timeout: float, limit: int
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    data = bytearray()
    for chunk in response.iter_content(chunk_size=65536):
        data += chunk
        if len(data) > limit:
            break
        if time.monotonic() > deadline:
            raise ActionFailed(f"http_request: timed out after {timeout:g}s", retryable=True)
    return bytes(data[:limit]), len(data) > limit


def _read_body(response: requests.Response, deadline: float, timeout: float) -> Any:
    """JSON when the content type says so, else text; at most BODY_LIMIT bytes are read."""
    raw, truncated = _read_raw(response, deadline, timeout, BODY_LIMIT)
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not truncated and (ctype == "application/json" or ctype.endswith("+json")) and raw:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    text = raw.decode(response.encoding or "utf-8", "replace")
    return text + "\n[... truncated at 1 MiB ...]" if truncated else text


def _send(
    spec: Spec, url: str, method: str, first: bool, deadline: float, session: requests.Session
) -> tuple[requests.PreparedRequest, requests.Response]:
    remaining = max(0.001, deadline - time.monotonic())
    request = requests.Request(
        method,
        url,
        headers=spec.headers,
        params=spec.params if first else None,
        json=spec.json if spec.method == method else None,
        data=spec.body.encode() if spec.method == method and spec.body is not None else None,
    )
    prepared = session.prepare_request(request)
    return prepared, session.send(
        prepared, allow_redirects=False, stream=True, timeout=min(remaining, spec.timeout)
    )


def _exchange(
    spec: Spec,
    allowlist: tuple[str, ...],
    allow_private: bool,
    reader: Callable[[requests.Response, float, float], Any] = _read_body,
) -> tuple[requests.Response, str, Any]:
    """Send, following up to MAX_REDIRECTS redirects, each re-checked (allowlist and address)."""
    deadline = time.monotonic() + spec.timeout
    url, method = spec.url, spec.method
    session = SESSIONS[allow_private]
    host = check_destination(url, allowlist, allow_private=allow_private)
    origin = _origin(url)
    for hop in range(MAX_REDIRECTS + 1):
        prepared, response = _send(spec, url, method, hop == 0, deadline, session)
        sent_host = _normal_host(parse_url(prepared.url or "").host or "")
        if sent_host != host:  # what requests sent must be what we checked
            response.close()
            raise _fail(f"refusing {prepared.url!r}: host changed while preparing the request")
        location = response.headers.get("Location")
        expected = bool(spec.expect_status) and response.status_code in (spec.expect_status or ())
        if response.status_code not in REDIRECTS or not location or expected:
            with response:
                return response, prepared.url or url, reader(response, deadline, spec.timeout)
        response.close()
        url = urljoin(prepared.url or url, location)
        host = check_destination(url, allowlist, allow_private=allow_private)
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
        if _origin(url) != origin:
            spec = _without_credentials(spec, url, resends_body=spec.method == method)
            origin = _origin(url)
    raise _fail(f"too many redirects (more than {MAX_REDIRECTS}) starting at {spec.url!r}")


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, normalised host, port with the scheme's default filled in)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    return scheme, _normal_host(parts.hostname or ""), parts.port or DEFAULT_PORTS[scheme]


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


def _without_credentials(spec: Spec, url: str, *, resends_body: bool) -> Spec:
    """The spec for a hop to another origin: no credential header; no secret in a resent body."""
    if resends_body and _holds_secret([spec.body, spec.json], spec.secrets):
        raise _fail(f"refusing to resend a body holding a secret to another origin ({url!r})")
    headers = {
        name: value
        for name, value in spec.headers.items()
        if not is_credential_header(name, value, spec.secrets)
    }
    return replace(spec, headers=headers)


@register("http_request")
def http_request(context: ActionContext) -> Any:
    """Output `{status, headers, body, url, elapsed_ms}`; 5xx/429/network errors are retryable."""
    resolved = getattr(context.context.get("secrets"), "resolved", None) or {}
    spec = parse(context.params, tuple(str(value) for value in resolved.values()))
    started = time.monotonic()
    try:
        response, url, body = _exchange(
            spec, context.settings.http_allowlist, context.settings.http_allow_private
        )
    except BlockedAddress as exc:  # raised at connect time: DNS changed after the check
        raise _fail(f"refusing {spec.url!r}: {exc}") from None
    except requests.Timeout:
        raise ActionFailed(
            f"http_request: timed out after {spec.timeout:g}s", retryable=True
        ) from None
    except requests.ConnectionError as exc:
        raise ActionFailed(f"http_request: could not connect: {exc}", retryable=True) from None
    except requests.RequestException as exc:
        raise _fail(f"request failed: {exc}") from None
    status = response.status_code
    output = {
        "status": status,
        "headers": dict(response.headers),
        "body": body,
        "url": url,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }
    ok = status in spec.expect_status if spec.expect_status else 200 <= status < 300
    if not ok:
        raise ActionFailed(
            f"http_request: unexpected status {status} {response.reason or ''}".rstrip()
            + f" from {spec.method} {url}",
            retryable=status >= 500 or status == 429,
            details=output,
        )
    return output


DOCUMENT_LIMIT = 50 * 1024 * 1024


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
    """GET a document's raw bytes (for memory ingestion) under exactly the rules of
    `http_request`: host allowlist, checked and pinned addresses, redirects re-checked.
    Raises ActionFailed with a message naming the URL."""
    spec = parse({"url": url, "timeout": timeout})

    def read(response: requests.Response, deadline: float, budget: float) -> bytes:
        raw, truncated = _read_raw(response, deadline, budget, limit)
        if truncated:
            raise _fail(f"{url!r} is larger than {limit // (1024 * 1024)} MiB")
        return raw

    try:
        response, final_url, body = _exchange(spec, allowlist, allow_private, read)
    except BlockedAddress as exc:
        raise _fail(f"refusing {url!r}: {exc}") from None
    except requests.RequestException as exc:
        raise ActionFailed(f"could not fetch {url!r}: {exc}", retryable=True) from None
    if not 200 <= response.status_code < 300:
        raise _fail(f"fetching {url!r} answered {response.status_code}")
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return FetchedDocument(data=body, content_type=content_type, url=final_url)

"""Signed inbound webhooks: HMAC-SHA256 over `timestamp.body`, a replay window and nonces.

Header: `X-Agent33-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]` (several `v1` during a
secret rotation), as Stripe and Standard Webhooks do. The signature covers the raw body bytes;
comparison is constant-time; a timestamp outside the tolerance or a signature already seen
(a nonce kept in Redis for twice the tolerance) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import redis

from agent33.errors import Agent33Error, Conflict, Unauthorized

HEADER = "X-Agent33-Signature"
TOLERANCE_S = 300
NONCE_PREFIX = "agent33:webhook-nonce:"


class BadSignature(Unauthorized):
    code = "bad_signature"


class Replayed(Conflict):
    code = "webhook_replayed"


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[str, ...]


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value a sender puts on `body` (used by tests, clients and docs)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def parse(header: str | None) -> SignatureHeader:
    if not header:
        raise BadSignature(f"missing {HEADER} header", fields={HEADER: ["required"]})
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise BadSignature(
            f"malformed {HEADER} header: expected t=<unix>,v1=<hex>", fields={HEADER: ["malformed"]}
        )
    return SignatureHeader(timestamp, tuple(signatures))


def verify(
    *,
    secret: str,
    body: bytes,
    header: str | None,
    now: float | None = None,
    tolerance: int = TOLERANCE_S,
) -> SignatureHeader:
    """Check freshness then the MAC (constant time); raise BadSignature on any mismatch."""
    parsed = parse(header)
    current = time.time() if now is None else now
    if abs(current - parsed.timestamp) > tolerance:
        raise BadSignature(
            f"signature timestamp outside the {tolerance}s window",
            fields={HEADER: ["stale or future timestamp"]},
        )
    expected = hmac.new(
        secret.encode(), f"{parsed.timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in parsed.signatures):
        raise BadSignature("signature does not match", fields={HEADER: ["does not match"]})
    return parsed


def claim_nonce(client: redis.Redis, scope: str, nonce: str, tolerance: int = TOLERANCE_S) -> None:
    """First delivery wins; a replay inside the window is refused (SET NX with expiry)."""
    key = f"{NONCE_PREFIX}{scope}:{nonce}"
    try:
        fresh = client.set(key, "1", nx=True, ex=2 * tolerance)
    except redis.RedisError as exc:
        raise Agent33Error(f"cannot check webhook replay (redis): {exc}") from None
    if not fresh:
        raise Replayed("this webhook delivery was already received", fields={HEADER: ["replayed"]})

"""Signed inbound webhooks in the Standard Webhooks scheme: the id, timestamp and body are signed.

Headers: `webhook-id` (the delivery id, also the run's idempotency key), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` entries
separated by single spaces, several during a secret rotation). The MAC covers
`{id}.{timestamp}.{body}`, so no part of a delivery that matters can change without the secret.
Headers are parsed strictly (one of each, bounded ASCII, no ambiguity) because whatever a parser
tolerates is a variant an attacker can replay. A verified signature is kept as a nonce in Redis
for twice the tolerance (a timestamp is accepted from `tolerance` before it to `tolerance` after
it), so resending a captured delivery, however its unsigned parts are dressed, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from agent33.errors import Conflict, ServiceUnavailable, Unauthorized

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
LEGACY_HEADER = "X-Agent33-Signature"  # t=,v1= over `t.body`: it did not sign the delivery id
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
TOLERANCE_S = 300
NONCE_PREFIX = "agent33:webhook-nonce:"
MAX_SIGNATURES = 8
MAX_SIGNATURE_HEADER = 1024

_ID = re.compile(r"[A-Za-z0-9_\-:]{1,150}", re.ASCII)
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}", re.ASCII)  # 12 digits: year 33658, no overflow
_VERSION = re.compile(r"v[0-9]{1,3}[a-z]?", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{1,200}={0,2}", re.ASCII)


class BadSignature(Unauthorized):
    code = "bad_signature"


class Replayed(Conflict):
    code = "webhook_replayed"


@dataclass(frozen=True)
class SignedHeaders:
    """The three headers, parsed: `signatures` are the decoded `v1` MACs (unknown versions
    skipped, as the scheme asks, so a sender may add a newer version beside v1)."""

    webhook_id: str
    timestamp: int
    timestamp_text: str
    signatures: tuple[bytes, ...]


@dataclass(frozen=True)
class Verified:
    """A delivery whose MAC matched: `nonce` names it for replay checks (hex of the MAC we
    computed, never of the header text, so re-encoding a signature cannot make a new nonce)."""

    webhook_id: str
    timestamp: int
    nonce: str


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (padding optional, like the reference library).

    A secret that is not base64 after the prefix is used as UTF-8 bytes, whole, so secrets
    stored before the migration keep working for senders that sign with the same rule.
    """
    text = secret.strip()
    encoded = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    return key or text.encode()


def _mac(secret: str, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(secret_key(secret), signed, hashlib.sha256).digest()


def sign(secret: str, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers a sender puts on `body` (used by tests, clients and docs)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = base64.b64encode(_mac(secret, webhook_id, ts, body)).decode()
    return {ID_HEADER: webhook_id, TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"v1,{mac}"}


def _malformed(header: str, expected: str) -> BadSignature:
    return BadSignature(
        f"malformed {header} header: expected {expected}", fields={header: ["malformed"]}
    )


def _one(headers: Mapping[str, Sequence[str]], name: str) -> str:
    """The single value of a required header; missing, repeated or empty is refused."""
    values = headers.get(name) or ()
    if not values:
        raise BadSignature(
            f"missing {name} header (Standard Webhooks signature: {', '.join(HEADERS)})",
            fields={name: ["required"]},
        )
    if len(values) != 1:
        raise _malformed(name, "exactly one header")
    return values[0]


def _signatures(value: str) -> tuple[bytes, ...]:
    if len(value) > MAX_SIGNATURE_HEADER:
        raise _malformed(SIGNATURE_HEADER, f"at most {MAX_SIGNATURE_HEADER} characters")
    entries = value.split(" ")
    if len(entries) > MAX_SIGNATURES:
        raise _malformed(SIGNATURE_HEADER, f"at most {MAX_SIGNATURES} signatures")
    found: list[bytes] = []
    for entry in entries:
        version, comma, payload = entry.partition(",")
        if not comma or not payload or not _VERSION.fullmatch(version):
            raise _malformed(SIGNATURE_HEADER, "'v1,<base64>' entries separated by single spaces")
        if version != "v1":
            continue  # a version we do not know (v1a, v2): skipped, as the scheme asks
        if not _BASE64.fullmatch(payload):
            raise _malformed(SIGNATURE_HEADER, "v1 signatures in base64")
        try:
            mac = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise _malformed(SIGNATURE_HEADER, "v1 signatures in padded base64") from None
        if len(mac) != hashlib.sha256().digest_size:
            raise _malformed(SIGNATURE_HEADER, "v1 signatures of 32 bytes (HMAC-SHA256)")
        found.append(mac)
    if not found:
        raise _malformed(SIGNATURE_HEADER, "at least one v1 signature")
    return tuple(found)


def parse(headers: Mapping[str, Sequence[str]]) -> SignedHeaders:
    """Parse the three headers (lower-case names to every value received); BadSignature if any
    is missing, repeated or malformed. Cheap and secret-free: callers run it before looking up
    the secret, so an unsigned request learns nothing, not even whether the webhook exists."""
    webhook_id = _one(headers, ID_HEADER)
    if not _ID.fullmatch(webhook_id):
        raise _malformed(ID_HEADER, "1-150 characters of A-Z a-z 0-9 _ - :")
    timestamp = _one(headers, TIMESTAMP_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _malformed(TIMESTAMP_HEADER, "Unix seconds (at most 12 digits)")
    signatures = _signatures(_one(headers, SIGNATURE_HEADER))
    return SignedHeaders(webhook_id, int(timestamp), timestamp, signatures)


def verify(
    *,
    secret: str,
    body: bytes,
    headers: Mapping[str, Sequence[str]],
    now: float | None = None,
    tolerance: int = TOLERANCE_S,
) -> Verified:
    """Check freshness then the MAC (constant time); raise BadSignature on any mismatch."""
    parsed = parse(headers)
    current = int(time.time() if now is None else now)
    if abs(current - parsed.timestamp) > tolerance:
        raise BadSignature(
            f"{TIMESTAMP_HEADER} outside the {tolerance}s window (too old or too new)",
            fields={TIMESTAMP_HEADER: ["stale or future timestamp"]},
        )
    expected = _mac(secret, parsed.webhook_id, parsed.timestamp_text, body)
    matched = False
    for candidate in parsed.signatures:  # no early exit: every entry costs the same
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise BadSignature("signature does not match", fields={SIGNATURE_HEADER: ["no match"]})
    return Verified(parsed.webhook_id, parsed.timestamp, expected.hex())


def claim_nonce(client: redis.Redis, scope: str, nonce: str, tolerance: int = TOLERANCE_S) -> None:
    """First delivery wins; a replay is refused (SET NX, kept for the whole acceptance window:
    a timestamp stays acceptable for 2 x tolerance, so the nonce must live at least that long)."""
    key = f"{NONCE_PREFIX}{scope}:{nonce}"
    try:
        fresh = client.set(key, "1", nx=True, ex=2 * tolerance + 1)
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"cannot check webhook replay: redis is unavailable ({type(exc).__name__})",
            fields={"service": ["redis"]},
        ) from None
    if not fresh:
        raise Replayed(
            "this webhook delivery was already received",
            fields={SIGNATURE_HEADER: ["replayed"]},
        )

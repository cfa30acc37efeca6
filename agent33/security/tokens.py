"""Short-lived HMAC-signed access tokens (JWT) carrying the subject and its scopes."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from typing import Any, TypedDict

import jwt

from agent33.config import Settings
from agent33.errors import Unauthorized


class TokenClaims(TypedDict):
    sub: str
    scopes: list[str]
    iat: int
    exp: int
    jti: str


REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti"]


def signing_key(settings: Settings) -> bytes:
    """The secret stretched to 64 bytes, the minimum PyJWT accepts for HS512 without warning.

    The secret's real strength is enforced by `config.validate` (32+ characters in production);
    this only keeps the development default usable without an insecure-key warning per request.
    """
    return hashlib.sha512(b"agent33-jwt:" + settings.jwt_secret.encode()).digest()


def issue_token(
    settings: Settings,
    subject: str,
    scopes: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> str:
    """A signed token valid for `settings.jwt_expire_minutes`; `now` exists for tests."""
    issued = now or dt.datetime.now(dt.UTC)
    expires = issued + dt.timedelta(minutes=settings.jwt_expire_minutes)
    claims: TokenClaims = {
        "sub": subject,
        "scopes": list(scopes),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(dict(claims), signing_key(settings), algorithm=settings.jwt_algorithm)


def decode_token(settings: Settings, token: str) -> TokenClaims:
    """Verify signature, algorithm and expiry; raise Unauthorized saying why it was refused.

    The algorithm list is pinned to the configured one, so `alg: none` or a swapped algorithm
    cannot pass.
    """
    try:
        raw: dict[str, Any] = jwt.decode(
            token,
            signing_key(settings),
            algorithms=[settings.jwt_algorithm],
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("access token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid access token: {exc}") from None
    scopes = raw.get("scopes", [])
    if not isinstance(raw["sub"], str) or not isinstance(scopes, list):
        raise Unauthorized("invalid access token: malformed claims")
    return {
        "sub": raw["sub"],
        "scopes": [str(scope) for scope in scopes],
        "iat": int(raw["iat"]),
        "exp": int(raw["exp"]),
        "jti": str(raw["jti"]),
    }

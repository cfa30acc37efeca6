"""Short-lived HMAC-signed access tokens (JWT) and the opaque refresh tokens that renew them.

Access tokens carry `iss`, `aud`, `sub`, `scopes`, `iat`, `exp`, `jti` and `typ: access`, and a
`kid` header naming the key that signed them. `JWT_SECRET` may list several keys: the first
signs, every listed key verifies, so a key can be rotated without logging everyone out (the old
one is dropped from the list once its tokens have expired). Decoding pins the configured HS
algorithm, so `alg: none` and HS/RS confusion cannot pass.

A token outlives nothing about its user: `user_scopes` reads the user's current state (gone,
disabled, scopes narrowed) and `narrow_scopes` cuts the token's scopes down to it; the web layer
asks on every request through a cache of a few seconds, and a refresh always asks.

Refresh tokens are random strings stored only as SHA-256 hashes and rotated on every use; a
revoked one presented again is treated as stolen and revokes every refresh token of its user.
Functions that touch the database take `session` keyword-only and never commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Iterable
from typing import Any, TypedDict

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import RefreshToken, User
from agent33.errors import Unauthorized
from agent33.security.scopes import ADMIN, has_scopes

ACCESS = "access"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


class TokenClaims(TypedDict):
    iss: str
    aud: str
    sub: str
    scopes: list[str]
    iat: int
    exp: int
    jti: str
    typ: str


def _stretch(secret: str) -> bytes:
    """A secret stretched to 64 bytes, the minimum PyJWT accepts for HS512 without warning.

    The secret's real strength is enforced by `config.validate` (32+ characters in production);
    this only keeps the development default usable without an insecure-key warning per request.
    """
    return hashlib.sha512(b"agent33-jwt:" + secret.encode()).digest()


def key_id(key: bytes) -> str:
    """The `kid` of a signing key: it names the key without revealing anything usable about it."""
    return hashlib.sha256(key).hexdigest()[:16]


def verification_keys(settings: Settings) -> dict[str, bytes]:
    """Every configured key by its `kid`; the first key in `JWT_SECRET` is the signing one."""
    keys = [_stretch(secret.strip()) for secret in settings.jwt_secret.split(",") if secret.strip()]
    return {key_id(key): key for key in keys}


def signing_key(settings: Settings) -> bytes:
    """The key new tokens are signed with: the first one listed in `JWT_SECRET`."""
    return next(iter(verification_keys(settings).values()))


def issue_token(
    settings: Settings,
    subject: str,
    scopes: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> str:
    """A signed access token valid for `settings.jwt_expire_minutes`; `now` exists for tests."""
    issued = now or dt.datetime.now(dt.UTC)
    expires = issued + dt.timedelta(minutes=settings.jwt_expire_minutes)
    claims: TokenClaims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "scopes": list(scopes),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": secrets.token_hex(16),
        "typ": ACCESS,
    }
    key = signing_key(settings)
    return jwt.encode(
        dict(claims), key, algorithm=settings.jwt_algorithm, headers={"kid": key_id(key)}
    )


def _key_for(settings: Settings, token: str) -> bytes:
    """The verification key the header's `kid` names, after refusing a foreign algorithm.

    The algorithm is checked here too (not only by PyJWT) so the refusal message is explicit.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid access token: {exc}") from None
    alg = header.get("alg")
    if alg != settings.jwt_algorithm:
        raise Unauthorized(
            f"invalid access token: the specified alg value is not allowed ({alg!r}, "
            f"expected {settings.jwt_algorithm})"
        )
    key = verification_keys(settings).get(str(header.get("kid", "")))
    if key is None:
        raise Unauthorized("invalid access token: unknown signing key (kid)")
    return key


def decode_token(settings: Settings, token: str) -> TokenClaims:
    """Verify key, algorithm, issuer, audience, expiry and type; raise Unauthorized saying why."""
    try:
        raw: dict[str, Any] = jwt.decode(
            token,
            _key_for(settings, token),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("access token has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("invalid access token: wrong audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("invalid access token: wrong issuer") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid access token: {exc}") from None
    if raw.get("typ") != ACCESS:
        raise Unauthorized(f"invalid access token: typ {raw.get('typ')!r} is not an access token")
    scopes = raw.get("scopes", [])
    if not isinstance(raw["sub"], str) or not isinstance(scopes, list):
        raise Unauthorized("invalid access token: malformed claims")
    return {
        "iss": str(raw["iss"]),
        "aud": settings.jwt_audience,
        "sub": raw["sub"],
        "scopes": [str(scope) for scope in scopes],
        "iat": int(raw["iat"]),
        "exp": int(raw["exp"]),
        "jti": str(raw["jti"]),
        "typ": ACCESS,
    }


def user_scopes(*, session: Session, subject: str) -> list[str] | None:
    """The current scopes of the active user named `subject`; None if deleted or disabled."""
    user = session.scalar(select(User).where(User.username == subject))
    if user is None or not user.is_active:
        return None
    return list(user.scopes)


def narrow_scopes(token_scopes: Iterable[str], current: Iterable[str]) -> list[str]:
    """The token's scopes the user still holds: a token never grants more than its user now has.

    A token carrying `admin` for a user who lost it keeps what the user still holds, since
    `admin` in the token covered those too.
    """
    held = list(dict.fromkeys(current))
    token = list(dict.fromkeys(token_scopes))
    kept = [scope for scope in token if has_scopes(held, [scope])]
    if ADMIN in token and ADMIN not in held:
        kept += [scope for scope in held if scope not in kept]
    return kept


class RefreshTokenReused(Unauthorized):
    """A revoked refresh token came back: the caller must revoke the user's whole family."""

    def __init__(self, user_id: uuid.UUID) -> None:
        super().__init__("refresh token has been revoked")
        self.user_id = user_id


def _hash_refresh(raw: str) -> str:
    """SHA-256 hex: the token is 256 random bits, so a slow hash would add nothing."""
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_refresh_token(
    *, session: Session, settings: Settings, user_id: uuid.UUID, now: dt.datetime | None = None
) -> tuple[RefreshToken, str]:
    """Store a new refresh token's hash and return (row, raw); `now` exists for tests."""
    issued = now or dt.datetime.now(dt.UTC)
    raw = secrets.token_urlsafe(32)
    row = RefreshToken(
        user_id=user_id,
        token_hash=_hash_refresh(raw),
        created_at=issued,
        expires_at=issued + dt.timedelta(days=settings.jwt_refresh_expire_days),
    )
    session.add(row)
    session.flush()
    return row, raw


def rotate_refresh_token(*, session: Session, settings: Settings, raw: str) -> tuple[User, str]:
    """Revoke the presented token and return (its active user, a new raw refresh token).

    The row is locked so two concurrent uses of one token cannot both succeed. Raises
    RefreshTokenReused for a revoked token (nothing is changed here: the caller revokes the
    family in its own transaction, since this one rolls back) and Unauthorized otherwise.
    """
    row = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == _hash_refresh(raw)).with_for_update()
    )
    if row is None:
        raise Unauthorized("invalid refresh token")
    if row.revoked_at is not None:
        raise RefreshTokenReused(row.user_id)
    now = dt.datetime.now(dt.UTC)
    if row.expires_at <= now:
        raise Unauthorized("refresh token has expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("refresh token owner is inactive")
    successor, new_raw = issue_refresh_token(
        session=session, settings=settings, user_id=user.id, now=now
    )
    row.revoked_at = now
    row.replaced_by = successor.id
    return user, new_raw


def revoke_user_refresh_tokens(*, session: Session, user_id: uuid.UUID) -> int:
    """Revoke every still-active refresh token of the user; the number revoked."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_refresh_token(*, session: Session, raw: str) -> RefreshToken | None:
    """Revoke the token if it exists (idempotent; the first revocation time is kept)."""
    row = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == _hash_refresh(raw)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = dt.datetime.now(dt.UTC)
    return row

"""API keys and users: credentials are stored only as hashes, and raw keys are shown once.

A key reads `a33_<prefix>_<secret>`: the prefix finds the row, the SHA-256 of the whole key is
compared in constant time. Functions take `session` keyword-only and never commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable

from sqlalchemy import func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from agent33.config import ConfigError, parse_rate
from agent33.db.models import ApiKey, User
from agent33.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from agent33.security.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from agent33.security.scopes import ADMIN, validate_scopes

KEY_MARKER = "a33"
PREFIX_LENGTH = 8
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
_DUMMY_DIGEST = hashlib.sha256(b"agent33-no-such-key").hexdigest()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_key(raw: str) -> str:
    """SHA-256 hex of the whole key: keys are random, so a slow hash would add nothing."""
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A fresh (prefix, raw_key) pair from the OS CSPRNG."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    return prefix, f"{KEY_MARKER}_{prefix}_{secrets.token_urlsafe(32)}"


def parse_prefix(raw: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    marker, _, rest = raw.partition("_")
    prefix, _, secret = rest.partition("_")
    if marker != KEY_MARKER or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    return prefix


MAX_BURST = 1_000_000  # the most requests a key's own burst may allow at once


def create_api_key(
    *,
    session: Session,
    name: str,
    scopes: Iterable[str],
    user_id: uuid.UUID | None = None,
    expires_at: dt.datetime | None = None,
    rate_limit: str | None = None,
    rate_burst: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key's hash and return (row, raw_key); the raw key cannot be recovered later.

    `rate_limit`/`rate_burst` replace `AGENT33_RATE_LIMIT`/`AGENT33_RATE_BURST` for this key
    (an operator's load client, a busy integration); `rate_limit="0"` leaves it unmetered.

    Raises ValidationFailed for an empty name, an unknown scope or a malformed limit.
    """
    if not name.strip():
        raise ValidationFailed("API key name must not be empty", fields={"name": ["Required."]})
    granted = validate_scopes(scopes)
    rate_limit = _normalised_rate(rate_limit)
    if rate_burst is not None and not 1 <= rate_burst <= MAX_BURST:
        message = f"rate_burst must be between 1 and {MAX_BURST}"
        raise ValidationFailed(message, fields={"rate_burst": [message]})
    while True:
        prefix, raw = generate_key()
        taken = session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
        if taken is None:
            break
    key = ApiKey(
        name=name.strip(),
        prefix=prefix,
        key_hash=hash_key(raw),
        scopes=granted,
        user_id=user_id,
        expires_at=expires_at,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
    )
    session.add(key)
    session.flush()
    return key, raw


def _normalised_rate(text: str | None) -> str | None:
    """A per-key limit in the settings' syntax, stored canonically (`0`: unmetered)."""
    if text is None:
        return None
    try:
        spec = parse_rate("rate_limit", text)
    except ConfigError as exc:
        raise ValidationFailed(str(exc), fields={"rate_limit": [str(exc)]}) from None
    return "0" if spec is None else str(spec)


def authenticate_api_key(*, session: Session, raw: str) -> ApiKey:
    """The active key matching `raw`, with `last_used_at` updated.

    Raises Unauthorized for an unknown, malformed, revoked or expired key, or an inactive owner.
    """
    prefix = parse_prefix(raw)
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    expected = key.key_hash if key is not None else _DUMMY_DIGEST
    matches = hmac.compare_digest(hash_key(raw), expected)
    if key is None or not matches:
        raise Unauthorized("invalid API key")
    now = _utcnow()
    if key.revoked_at is not None:
        raise Unauthorized("API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("API key has expired")
    if key.user_id is not None:
        owner = session.get(User, key.user_id)
        if owner is None or not owner.is_active:
            raise Unauthorized("API key owner is inactive")
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now  # coarse, so a busy key does not write a row on every request
    return key


def active_key_scopes(*, session: Session, key_id: uuid.UUID) -> list[str] | None:
    """The scopes of the key now, or None when it is gone, revoked, expired or its owner
    inactive: a session opened with a key (the dashboard's) is held against its current state."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= _utcnow():
        return None
    if key.user_id is not None:
        owner = session.get(User, key.user_id)
        if owner is None or not owner.is_active:
            return None
    return list(key.scopes)


def list_api_keys(
    *, session: Session, limit: int = 50, offset: int = 0
) -> tuple[list[ApiKey], int]:
    """A page of keys, newest first, and the total (rows carry hashes: never expose them)."""
    total = session.scalar(select(func.count()).select_from(ApiKey)) or 0
    page = session.scalars(
        select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit).offset(offset)
    )
    return list(page), int(total)


class LastAdminKey(Conflict):
    code = "last_admin_key"


def active_admin_keys(*, session: Session, lock: bool = False) -> list[ApiKey]:
    """Unrevoked, unexpired keys holding `admin`; `lock` holds them until the transaction ends,
    so two concurrent revocations cannot each think the other key survives."""
    now = _utcnow()
    query = (
        select(ApiKey)
        .where(
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            type_coerce(ApiKey.scopes, JSONB).contains([ADMIN]),
        )
        .order_by(ApiKey.id)
    )
    return list(session.scalars(query.with_for_update() if lock else query))


def revoke_api_key(
    *, session: Session, key_id: uuid.UUID, keep_an_admin_key: bool = True
) -> ApiKey:
    """Mark the key revoked (idempotent: the first revocation time is kept); NotFound if absent.

    Raises LastAdminKey (409) instead of revoking the only active `admin` key, which would
    leave the API with nobody able to manage it (unless `keep_an_admin_key` is False).
    """
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found", fields={"key_id": ["not found"]})
    if key.revoked_at is None:
        if keep_an_admin_key and ADMIN in key.scopes:
            active = {admin.id for admin in active_admin_keys(session=session, lock=True)}
            if active == {key.id}:
                raise LastAdminKey(
                    "cannot revoke the last active admin key: create another admin key first",
                    fields={"key_id": ["last active admin key"]},
                )
        key.revoked_at = _utcnow()
    return key


def create_user(*, session: Session, username: str, password: str, scopes: Iterable[str]) -> User:
    """A new active user with a scrypt password hash.

    Raises Conflict for a taken username, ValidationFailed for empty input or unknown scopes.
    """
    username = username.strip()
    problems: dict[str, list[str]] = {}
    if not username:
        problems["username"] = ["Required."]
    if not password:
        problems["password"] = ["Required."]
    if problems:
        raise ValidationFailed("username and password are required", fields=problems)
    granted = validate_scopes(scopes)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists", fields={"username": ["Already taken."]})
    user = User(username=username, password_hash=hash_password(password), scopes=granted)
    session.add(user)
    session.flush()
    return user


def authenticate_user(*, session: Session, username: str, password: str) -> User:
    """The active user with this password; one message for every failure so nothing leaks.

    A hash in an older format (argon2, or weaker scrypt parameters) is replaced by a current
    scrypt hash on this successful login, the only moment the plaintext is at hand.
    Raises Unauthorized on an unknown user, a wrong password or an inactive account.
    """
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        verify_dummy(password)
        raise Unauthorized("invalid username or password")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthorized("invalid username or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user

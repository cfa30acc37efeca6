"""Argon2id password hashing; verification never raises so callers cannot leak why it failed."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

# Verified against when the user does not exist, so an unknown username costs the same time.
_DUMMY_HASH = _hasher.hash("agent33-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id hash with a fresh salt, in the self-describing PHC string format."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False on a mismatch or a malformed hash (never raises)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_dummy(password: str) -> bool:
    """Spend one verification's time for an unknown user (always False)."""
    verify_password(_DUMMY_HASH, password)
    return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True

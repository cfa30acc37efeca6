"""Password hashing with scrypt (memory-hard, from `cryptography`); verification never raises.

Why scrypt: its memory cost (128 * n * r bytes, 32 MiB here) makes GPU/ASIC guessing expensive,
and `cryptography` is already a dependency. Stored hashes are self-describing,
`scrypt$n$r$p$salt_b64$hash_b64`, so the parameters can be raised later and `needs_rehash` tells
which rows to upgrade. Argon2 hashes written before the switch (`$argon2...`) still verify, so
existing users can log in and are rehashed to scrypt on that successful login.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCHEME = "scrypt"
N, R, P = 2**15, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
# Refuse stored parameters beyond these so a tampered row cannot make one login eat the host.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(password.encode("utf-8"))


def hash_password(password: str) -> str:
    """A scrypt hash with a fresh 16-byte salt, in the `scrypt$n$r$p$salt$hash` format."""
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, N, R, P, KEY_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(key)}"


def _parse(password_hash: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, key) of a well-formed scrypt hash within sane bounds, else None."""
    parts = password_hash.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return None
    valid_n = 2 <= n <= _MAX_N and n & (n - 1) == 0
    if not valid_n or not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P or not salt or len(key) < 16:
        return None
    return n, r, p, salt, key


def _verify_argon2(password_hash: str, password: str) -> bool:
    """Legacy argon2 hashes; imported lazily so argon2-cffi can be dropped once none remain."""
    try:
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
    except ImportError:  # pragma: no cover - only when argon2-cffi is uninstalled
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False on a mismatch or a malformed hash (never raises).

    `Scrypt.verify` compares the derived key in constant time.
    """
    if password_hash.startswith("$argon2"):
        return _verify_argon2(password_hash, password)
    parsed = _parse(password_hash)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    try:
        Scrypt(salt=salt, length=len(key), n=n, r=r, p=p).verify(password.encode("utf-8"), key)
    except (InvalidKey, ValueError, MemoryError):
        return False
    return True


# Verified against when the user does not exist, so an unknown username costs the same time.
_DUMMY_HASH = hash_password("agent33-dummy-password")


def verify_dummy(password: str) -> bool:
    """Spend one verification's time for an unknown user (always False)."""
    verify_password(_DUMMY_HASH, password)
    return False


def needs_rehash(password_hash: str) -> bool:
    """True for any other scheme (argon2, garbage) or for scrypt parameters below the current."""
    parsed = _parse(password_hash)
    if parsed is None:
        return True
    n, r, p, salt, key = parsed
    return (n, r, p) != (N, R, P) or len(salt) < SALT_BYTES or len(key) != KEY_BYTES

"""Password hashing: salted scrypt, verification that never raises, argon2 hashes still accepted."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from agent33.security.passwords import (
    KEY_BYTES,
    SALT_BYTES,
    hash_password,
    needs_rehash,
    verify_dummy,
    verify_password,
)
from agent33.security.passwords import _unb64 as unb64

pytestmark = pytest.mark.security


def test_hash_is_salted_self_describing_scrypt_and_not_the_password() -> None:
    first, second = hash_password("s3cret!"), hash_password("s3cret!")
    scheme, n, r, p, salt, key = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**15), "8", "1")
    assert len(unb64(salt)) == SALT_BYTES
    assert len(unb64(key)) == KEY_BYTES
    assert "s3cret!" not in first
    assert first != second


def test_right_password_verifies() -> None:
    assert verify_password(hash_password("correct horse"), "correct horse") is True


def test_unicode_password_verifies() -> None:
    assert verify_password(hash_password("pässwörd ✓"), "pässwörd ✓") is True


@pytest.mark.parametrize("attempt", ["Correct horse", "correct horse ", "", "x" * 500])
def test_wrong_password_returns_false(attempt: str) -> None:
    assert verify_password(hash_password("correct horse"), attempt) is False


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$argon2id$v=19$garbage",
        "$2b$12$abcdef",
        "scrypt$32768$8$1$!!!$???",
        "scrypt$1000$8$1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5",  # n not a power of two
        "scrypt$1073741824$8$1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5",  # absurd memory cost
        "scrypt$32768$8$1$c2FsdA",
    ],
)
def test_malformed_hash_returns_false_instead_of_raising(stored: str) -> None:
    assert verify_password(stored, "anything") is False
    assert needs_rehash(stored) is True


def test_tampered_hash_does_not_verify() -> None:
    stored = hash_password("pw")
    head, key = stored.rsplit("$", 1)
    flipped = ("A" if key[0] != "A" else "B") + key[1:]
    assert verify_password(f"{head}${flipped}", "pw") is False


def test_dummy_verification_never_succeeds() -> None:
    assert verify_dummy("agent33-dummy-password") is False


def test_needs_rehash_only_for_weaker_or_foreign_hashes() -> None:
    assert needs_rehash(hash_password("pw")) is False
    assert needs_rehash("not-a-hash") is True
    weaker = hash_password("pw").replace("scrypt$32768$", "scrypt$16384$", 1)
    assert needs_rehash(weaker) is True


def test_existing_argon2_hash_still_verifies_and_needs_rehash() -> None:
    legacy = PasswordHasher().hash("correct horse")
    assert verify_password(legacy, "correct horse") is True
    assert verify_password(legacy, "wrong horse") is False
    assert needs_rehash(legacy) is True

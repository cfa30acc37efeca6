"""Password hashing: argon2id, salted, and verification that never raises."""

from __future__ import annotations

import pytest

from agent33.security.passwords import hash_password, needs_rehash, verify_dummy, verify_password


def test_hash_is_salted_argon2id_and_not_the_password() -> None:
    first, second = hash_password("s3cret!"), hash_password("s3cret!")
    assert first.startswith("$argon2id$")
    assert "s3cret!" not in first
    assert first != second


def test_right_password_verifies() -> None:
    assert verify_password(hash_password("correct horse"), "correct horse") is True


@pytest.mark.parametrize("attempt", ["Correct horse", "correct horse ", "", "x" * 500])
def test_wrong_password_returns_false(attempt: str) -> None:
    assert verify_password(hash_password("correct horse"), attempt) is False


@pytest.mark.parametrize("stored", ["", "plaintext", "$argon2id$v=19$garbage", "$2b$12$abcdef"])
def test_malformed_hash_returns_false_instead_of_raising(stored: str) -> None:
    assert verify_password(stored, "anything") is False


def test_dummy_verification_never_succeeds() -> None:
    assert verify_dummy("agent33-dummy-password") is False


def test_needs_rehash_only_for_weak_or_foreign_hashes() -> None:
    assert needs_rehash(hash_password("pw")) is False
    assert needs_rehash("not-a-hash") is True

"""Access tokens: claims round-trip; expired, forged, misdirected and algorithm-swapped tokens
are refused, and a rotated-out key keeps verifying only while it is still listed."""

from __future__ import annotations

import datetime as dt
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent33.config import Settings
from agent33.errors import Unauthorized
from agent33.security.tokens import decode_token, issue_token, key_id, narrow_scopes, signing_key

pytestmark = pytest.mark.security

SETTINGS = Settings(jwt_secret="unit-test-secret-" + "x" * 40, jwt_expire_minutes=15)
OLD_SECRET = "old-rotated-secret-" + "z" * 40


def _claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims for SETTINGS, with `changes` applied (None deletes a claim)."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims: dict[str, Any] = {
        "iss": "agent33",
        "aud": "agent33-api",
        "sub": "ada",
        "scopes": ["admin"],
        "iat": now,
        "exp": now + 60,
        "jti": "x" * 32,
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], settings: Settings = SETTINGS, **headers: Any) -> str:
    key = signing_key(settings)
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": key_id(key), **headers})


def test_issued_token_round_trips_its_claims() -> None:
    claims = decode_token(SETTINGS, issue_token(SETTINGS, "ada", ["runs:read", "runs:write"]))
    assert claims["sub"] == "ada"
    assert claims["scopes"] == ["runs:read", "runs:write"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert len(claims["jti"]) == 32
    assert (claims["iss"], claims["aud"], claims["typ"]) == ("agent33", "agent33-api", "access")


def test_header_names_the_signing_key_by_kid() -> None:
    header = jwt.get_unverified_header(issue_token(SETTINGS, "ada", []))
    assert header["alg"] == "HS256"
    assert header["kid"] == key_id(signing_key(SETTINGS))
    assert len(header["kid"]) == 16
    assert int(header["kid"], 16) >= 0


def test_each_token_has_a_unique_id() -> None:
    first = decode_token(SETTINGS, issue_token(SETTINGS, "ada", []))
    second = decode_token(SETTINGS, issue_token(SETTINGS, "ada", []))
    assert first["jti"] != second["jti"]


def test_development_default_secret_works_without_insecure_key_warning() -> None:
    # filterwarnings=error turns PyJWT's InsecureKeyLengthWarning into a failure here.
    default = Settings()
    assert decode_token(default, issue_token(default, "dev", ["admin"]))["sub"] == "dev"


def test_expired_token_is_refused_with_a_clear_message() -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(SETTINGS, issue_token(SETTINGS, "ada", [], now=past))


def test_token_signed_with_another_secret_is_refused() -> None:
    other = SETTINGS.replace(jwt_secret="another-secret-" + "y" * 40)
    with pytest.raises(Unauthorized, match="invalid access token"):
        decode_token(SETTINGS, issue_token(other, "ada", ["admin"]))


def test_token_signed_with_another_secret_but_our_kid_is_refused() -> None:
    other = SETTINGS.replace(jwt_secret="another-secret-" + "y" * 40)
    kid = key_id(signing_key(SETTINGS))
    token = jwt.encode(_claims(), signing_key(other), algorithm="HS256", headers={"kid": kid})
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        decode_token(SETTINGS, token)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = issue_token(SETTINGS, "ada", ["runs:read"]).split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"ada","scopes":["admin"]}').decode()
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, f"{header}.{forged_payload}.{signature}")


def test_unsigned_alg_none_token_is_refused() -> None:
    kid = key_id(signing_key(SETTINGS))
    token = jwt.encode(_claims(), None, algorithm="none", headers={"kid": kid})
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        decode_token(SETTINGS, token)


def test_rs256_token_is_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = key_id(signing_key(SETTINGS))
    token = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": kid})
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        decode_token(SETTINGS, token)


def test_hs_rs_confusion_is_refused() -> None:
    """The classic attack: an HMAC signature whose header claims RS256 (keyed by a public key)."""
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = jwt.utils.base64url_encode(
        f'{{"alg":"RS256","typ":"JWT","kid":"{key_id(signing_key(SETTINGS))}"}}'.encode()
    )
    body = jwt.utils.base64url_encode(json.dumps(_claims()).encode())
    signing_input = header + b"." + body
    signature = hmac.new(public_pem, signing_input, "sha256").digest()
    token = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        decode_token(SETTINGS, token)
    # The same forgery with the header saying HS256 still fails: the key is not ours.
    forged = _sign(_claims(), SETTINGS.replace(jwt_secret=public_pem.decode()))
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, forged)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aud": "someone-else"}, "wrong audience"),
        ({"aud": None}, "aud"),
        ({"iss": "evil"}, "wrong issuer"),
        ({"iss": None}, "iss"),
        ({"sub": None}, "sub"),
        ({"iat": None}, "iat"),
        ({"exp": None}, "exp"),
        ({"typ": "refresh"}, "not an access token"),
        ({"typ": None}, "not an access token"),
    ],
)
def test_misdirected_or_incomplete_claims_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    assert decode_token(SETTINGS, _sign(_claims()))["sub"] == "ada"  # the baseline is valid
    with pytest.raises(Unauthorized, match=message):
        decode_token(SETTINGS, _sign(_claims(**changes)))


def test_issuer_and_audience_come_from_settings() -> None:
    custom = SETTINGS.replace(jwt_issuer="agent33-eu", jwt_audience="agent33-eu-api")
    claims = decode_token(custom, issue_token(custom, "ada", []))
    assert (claims["iss"], claims["aud"]) == ("agent33-eu", "agent33-eu-api")
    with pytest.raises(Unauthorized, match="wrong issuer"):
        decode_token(SETTINGS, issue_token(custom, "ada", []))
    other_audience = SETTINGS.replace(jwt_audience="agent33-eu-api")
    with pytest.raises(Unauthorized, match="wrong audience"):
        decode_token(SETTINGS, issue_token(other_audience, "ada", []))


@pytest.mark.parametrize("kid", ["0123456789abcdef", "", None])
def test_unknown_or_missing_kid_is_refused(kid: str | None) -> None:
    key = signing_key(SETTINGS)
    headers = {"kid": kid} if kid is not None else None
    token = jwt.encode(_claims(), key, algorithm="HS256", headers=headers)
    with pytest.raises(Unauthorized, match="unknown signing key"):
        decode_token(SETTINGS, token)


def test_rotation_old_key_verifies_while_listed_then_fails_once_removed() -> None:
    before = SETTINGS.replace(jwt_secret=OLD_SECRET)
    old_token = issue_token(before, "ada", ["runs:read"])
    rotated = SETTINGS.replace(jwt_secret=f"{SETTINGS.jwt_secret},{OLD_SECRET}")
    assert decode_token(rotated, old_token)["sub"] == "ada"
    new_token = issue_token(rotated, "ada", [])
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(signing_key(SETTINGS))
    assert decode_token(rotated, new_token)["sub"] == "ada"
    assert decode_token(SETTINGS, new_token)["sub"] == "ada"
    with pytest.raises(Unauthorized, match="unknown signing key"):
        decode_token(SETTINGS, old_token)


def test_token_with_another_algorithm_is_refused() -> None:
    hs512 = SETTINGS.replace(jwt_algorithm="HS512")
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        decode_token(SETTINGS, issue_token(hs512, "ada", ["admin"]))


def test_token_missing_a_required_claim_is_refused() -> None:
    with pytest.raises(Unauthorized, match="jti"):
        decode_token(SETTINGS, _sign(_claims(jti=None)))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, token)


@pytest.mark.parametrize(
    ("token", "current", "effective"),
    [
        (
            ["runs:read", "workflows:read"],
            ["runs:read", "workflows:read"],
            ["runs:read", "workflows:read"],
        ),
        (["runs:read", "workflows:read"], ["runs:read"], ["runs:read"]),
        (["runs:read"], ["runs:read", "keys:admin"], ["runs:read"]),  # never widened
        (["admin"], ["admin"], ["admin"]),
        (["admin"], ["runs:read"], ["runs:read"]),  # lost admin: keeps what is still held
        (["runs:read"], ["admin"], ["runs:read"]),
        (["runs:read"], [], []),
    ],
)
def test_a_tokens_scopes_are_narrowed_to_the_users_current_ones(
    token: list[str], current: list[str], effective: list[str]
) -> None:
    assert narrow_scopes(token, current) == effective

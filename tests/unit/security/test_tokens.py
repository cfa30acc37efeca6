"""Access tokens: claims round-trip; expired, forged and algorithm-swapped tokens are refused."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from agent33.config import Settings
from agent33.errors import Unauthorized
from agent33.security.tokens import decode_token, issue_token, signing_key

SETTINGS = Settings(jwt_secret="unit-test-secret-" + "x" * 40, jwt_expire_minutes=15)


def test_issued_token_round_trips_its_claims() -> None:
    claims = decode_token(SETTINGS, issue_token(SETTINGS, "ada", ["runs:read", "runs:write"]))
    assert claims["sub"] == "ada"
    assert claims["scopes"] == ["runs:read", "runs:write"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert len(claims["jti"]) == 32


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


def test_tampered_payload_is_refused() -> None:
    header, _, signature = issue_token(SETTINGS, "ada", ["runs:read"]).split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"ada","scopes":["admin"]}').decode()
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, f"{header}.{forged_payload}.{signature}")


def test_unsigned_alg_none_token_is_refused() -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "ada", "scopes": ["admin"], "iat": now, "exp": now + 60, "jti": "x"}
    token = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, token)


def test_token_with_another_algorithm_is_refused() -> None:
    hs512 = SETTINGS.replace(jwt_algorithm="HS512")
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        decode_token(SETTINGS, issue_token(hs512, "ada", ["admin"]))


def test_token_missing_a_required_claim_is_refused() -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "ada", "scopes": [], "iat": now, "exp": now + 60}  # no jti
    token = jwt.encode(claims, signing_key(SETTINGS), algorithm="HS256")
    with pytest.raises(Unauthorized, match="jti"):
        decode_token(SETTINGS, token)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        decode_token(SETTINGS, token)

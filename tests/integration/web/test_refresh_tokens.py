"""Refresh tokens: issued at login, rotated on use, a replay revokes the family, logout revokes.

Every refusal must be a 401 in the JSON error envelope, never a 500 or a leaked token.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import AuditEvent, RefreshToken, User
from agent33.security.tokens import issue_refresh_token

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db")]

PASSWORD = "correct horse"


def _login(client: FlaskClient, username: str = "ada") -> dict[str, Any]:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def _refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def _assert_401(response: Any, message: str) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == "unauthorized"
    assert message in error["message"]
    assert "access_token" not in response.get_data(as_text=True)


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _active_tokens(username: str) -> int:
    with session_scope() as session:
        rows = session.scalars(
            select(RefreshToken)
            .join(User, User.id == RefreshToken.user_id)
            .where(User.username == username, RefreshToken.revoked_at.is_(None))
        )
        return len(list(rows))


def _actions() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_login_returns_an_access_and_a_stored_hashed_refresh_token(
    client: FlaskClient, make_user: Any, settings: Settings
) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    tokens = _login(client)
    assert tokens["refresh_token"] and tokens["refresh_token"] != tokens["access_token"]
    assert tokens["refresh_expires_in"] == settings.jwt_refresh_expire_days * 86400
    assert client.get("/api/v1/runs", headers=_bearer(tokens)).status_code == 200
    with session_scope() as session:
        row = session.scalars(select(RefreshToken)).one()
        assert tokens["refresh_token"] not in row.token_hash
        assert len(row.token_hash) == 64
        assert row.expires_at - row.created_at == dt.timedelta(
            days=settings.jwt_refresh_expire_days
        )


def test_refresh_rotates_both_tokens(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    first = _login(client)
    response = _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scopes"] == ["runs:read"]
    assert client.get("/api/v1/runs", headers=_bearer(second)).status_code == 200
    assert _active_tokens("ada") == 1
    with session_scope() as session:
        old, new = session.scalars(select(RefreshToken).order_by(RefreshToken.created_at)).all()
        assert old.revoked_at is not None and old.replaced_by == new.id
    assert "auth.refresh" in _actions()


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: FlaskClient, make_user: Any
) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    other_session = _login(client)
    stolen = _login(client)["refresh_token"]
    current = _refresh(client, stolen).get_json()["refresh_token"]
    assert _active_tokens("ada") == 2

    _assert_401(_refresh(client, stolen), "revoked")
    assert _active_tokens("ada") == 0
    _assert_401(_refresh(client, current), "revoked")
    _assert_401(_refresh(client, other_session["refresh_token"]), "revoked")
    assert "auth.refresh_reuse" in _actions()


def test_reuse_leaves_other_users_alone(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    make_user("bob", PASSWORD, ["runs:read"])
    bob = _login(client, "bob")
    stolen = _login(client)["refresh_token"]
    _refresh(client, stolen)
    _assert_401(_refresh(client, stolen), "revoked")
    assert _refresh(client, bob["refresh_token"]).status_code == 200


def test_logout_revokes_the_refresh_token(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    tokens = _login(client)
    body = {"refresh_token": tokens["refresh_token"]}
    response = client.post("/api/v1/auth/logout", json=body, headers=_bearer(tokens))
    assert response.status_code == 204
    assert response.get_data() == b""
    _assert_401(_refresh(client, tokens["refresh_token"]), "revoked")
    again = client.post("/api/v1/auth/logout", json=body, headers=_bearer(tokens))
    assert again.status_code == 204
    assert "auth.logout" in _actions()


def test_logout_needs_authentication(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    tokens = _login(client)
    response = client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    _assert_401(response, "authentication required")
    assert _refresh(client, tokens["refresh_token"]).status_code == 200


def test_expired_refresh_token_is_refused(
    client: FlaskClient, make_user: Any, settings: Settings
) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.jwt_refresh_expire_days + 1)
    with session_scope() as session:
        user_id = session.scalars(select(User.id).where(User.username == "ada")).one()
        _, raw = issue_refresh_token(session=session, settings=settings, user_id=user_id, now=past)
    _assert_401(_refresh(client, raw), "expired")


def test_inactive_users_refresh_token_is_refused(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    tokens = _login(client)
    with session_scope() as session:
        session.scalars(select(User).where(User.username == "ada")).one().is_active = False
    _assert_401(_refresh(client, tokens["refresh_token"]), "inactive")


@pytest.mark.parametrize("token", ["not-a-token", "x" * 512])
def test_unknown_refresh_token_is_refused(client: FlaskClient, token: str) -> None:
    _assert_401(_refresh(client, token), "invalid refresh token")


def test_refresh_token_is_not_a_bearer_token(client: FlaskClient, make_user: Any) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    tokens = _login(client)
    response = client.get(
        "/api/v1/runs", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
    )
    _assert_401(response, "invalid access token")


def test_missing_refresh_token_is_a_validation_error(client: FlaskClient) -> None:
    response = client.post("/api/v1/auth/refresh", json={})
    assert response.status_code in (400, 422)
    assert "refresh_token" in response.get_data(as_text=True)


def test_legacy_argon2_user_logs_in_and_is_rehashed_to_scrypt(client: FlaskClient) -> None:
    with session_scope() as session:
        legacy = PasswordHasher().hash(PASSWORD)
        session.add(User(username="old", password_hash=legacy, scopes=["runs:read"]))
    _login(client, "old")
    with session_scope() as session:
        stored = session.scalars(select(User.password_hash).where(User.username == "old")).one()
    assert stored.startswith("scrypt$")
    _login(client, "old")

"""Attacks on authentication: guessing credentials from one address, flooding the audit log,
using a token after its user was disabled, deleted or narrowed, revoking the last admin key."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update

from agent33.config import RateSpec, Settings
from agent33.db import session_scope
from agent33.db.models import AuditEvent, User
from web import create_app

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db", "empty_rate_buckets")]

RUNS = "/api/v1/runs"
WORKFLOWS = "/api/v1/workflows"
PASSWORD = "a long enough password"


def _client(settings: Settings, **changes: Any) -> FlaskClient:
    return create_app(settings.replace(**changes)).test_client()


def _ip() -> str:
    """A client address of the test's own, so budgets spent elsewhere do not leak in."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def _audit_rows(action: str) -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        return int(session.scalar(query) or 0)


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code, error
    return dict(error)


def test_300_bad_keys_from_one_address_get_429s(
    settings: Settings, app: Flask, make_api_key: Any
) -> None:
    client = _client(settings, auth_failure_rate_limit=RateSpec(30, 60))  # the default
    ip = {"REMOTE_ADDR": _ip()}
    statuses = Counter(
        client.get(RUNS, headers={"X-API-Key": f"a33_{i:08x}_guess"}, environ_base=ip).status_code
        for i in range(300)
    )
    assert statuses[401] == 30 and statuses[429] == 270, statuses
    valid = make_api_key(["runs:read"])
    refused = client.get(RUNS, headers=valid, environ_base=ip)  # a right guess looks the same
    assert int(_error(refused, 429, "rate_limited") and refused.headers["Retry-After"]) >= 1
    assert client.get(RUNS, headers=valid, environ_base={"REMOTE_ADDR": _ip()}).status_code == 200
    assert _audit_rows("auth.denied") <= 5  # bounded, not 30
    assert _audit_rows("auth.rate_limited") == 1  # the flood is one event


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.forged"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {},
    ],
)
def test_forged_tokens_and_missing_credentials_spend_the_same_budget(
    settings: Settings, app: Flask, headers: dict[str, str]
) -> None:
    client = _client(settings, auth_failure_rate_limit=RateSpec(3, 60))
    ip = {"REMOTE_ADDR": _ip()}
    statuses = [client.get(RUNS, headers=headers, environ_base=ip).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


def test_bad_refresh_tokens_are_limited_per_address(settings: Settings, app: Flask) -> None:
    client = _client(settings, auth_failure_rate_limit=RateSpec(3, 60))
    ip = {"REMOTE_ADDR": _ip()}
    statuses = [
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": f"guess-{i}"}, environ_base=ip
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_an_unthrottled_flood_still_writes_a_bounded_number_of_audit_rows(
    settings: Settings, app: Flask
) -> None:
    client = _client(settings, auth_failure_rate_limit=None)
    ip = _ip()
    for i in range(300):
        response = client.get(
            RUNS, headers={"X-API-Key": f"a33_{i:08x}_guess"}, environ_base={"REMOTE_ADDR": ip}
        )
        assert response.status_code == 401
    with session_scope() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "auth.denied").order_by(AuditEvent.id)
        ).all()
    assert 1 <= len(rows) <= 10  # 5 per address and minute (the run may straddle a minute)
    assert all(row.ip == ip for row in rows)
    assert rows[0].details and rows[0].details["repeat"] == 1
    assert any((row.details or {}).get("later_in_window") for row in rows)


def _login(client: FlaskClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def test_a_disabled_or_deleted_users_token_stops_working(
    settings: Settings, app: Flask, make_user: Any
) -> None:
    client = _client(settings, token_recheck_seconds=0)
    make_user("mallory", PASSWORD, ["runs:read"])
    make_user("trent", PASSWORD, ["runs:read"])
    disabled, deleted = _login(client, "mallory"), _login(client, "trent")
    assert client.get(RUNS, headers=disabled).status_code == 200
    assert client.get(RUNS, headers=deleted).status_code == 200
    with session_scope() as session:
        session.execute(update(User).where(User.username == "mallory").values(is_active=False))
        session.execute(delete(User).where(User.username == "trent"))
    for bearer in (disabled, deleted):
        error = _error(client.get(RUNS, headers=bearer), 401, "unauthorized")
        assert "no longer exists or is disabled" in error["message"]


def test_narrowed_scopes_apply_to_tokens_already_issued(
    settings: Settings, app: Flask, make_user: Any
) -> None:
    client = _client(settings, token_recheck_seconds=0)
    make_user("oscar", PASSWORD, ["runs:read", "workflows:read"])
    bearer = _login(client, "oscar")
    assert client.get(WORKFLOWS, headers=bearer).status_code == 200
    with session_scope() as session:
        session.execute(update(User).where(User.username == "oscar").values(scopes=["runs:read"]))
    _error(client.get(WORKFLOWS, headers=bearer), 403, "forbidden")
    assert client.get(RUNS, headers=bearer).status_code == 200
    me = client.get("/api/v1/auth/me", headers=bearer).get_json()
    assert me["scopes"] == ["runs:read"]


def test_the_users_state_is_cached_only_briefly(
    settings: Settings, app: Flask, make_user: Any
) -> None:
    client = _client(settings, token_recheck_seconds=1)
    make_user("peggy", PASSWORD, ["runs:read"])
    bearer = _login(client, "peggy")
    assert client.get(RUNS, headers=bearer).status_code == 200  # looked up, cached for 1 s
    with session_scope() as session:
        session.execute(update(User).where(User.username == "peggy").values(is_active=False))
    assert client.get(RUNS, headers=bearer).status_code == 200  # within the cache
    time.sleep(1.1)
    _error(client.get(RUNS, headers=bearer), 401, "unauthorized")


def test_a_refresh_carries_the_users_current_scopes(client: FlaskClient, make_user: Any) -> None:
    make_user("victor", PASSWORD, ["runs:read", "workflows:read"])
    login = client.post("/api/v1/auth/token", json={"username": "victor", "password": PASSWORD})
    with session_scope() as session:
        session.execute(update(User).where(User.username == "victor").values(scopes=["runs:read"]))
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.get_json()["refresh_token"]}
    )
    assert refreshed.status_code == 200 and refreshed.get_json()["scopes"] == ["runs:read"]


def _create_key(client: FlaskClient, headers: dict[str, str], scopes: list[str]) -> Any:
    response = client.post("/api/v1/keys", json={"name": "k", "scopes": scopes}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def _key_id(client: FlaskClient, headers: dict[str, str]) -> str:
    key_id: str = client.get("/api/v1/auth/me", headers=headers).get_json()["key_id"]
    return key_id


def test_the_last_admin_key_cannot_be_revoked(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    own = _key_id(client, admin_headers)
    refused = client.delete(f"/api/v1/keys/{own}", headers=admin_headers)
    assert "last active admin key" in _error(refused, 409, "last_admin_key")["message"]
    assert client.get(RUNS, headers=admin_headers).status_code == 200  # still works
    second = _create_key(client, admin_headers, ["admin"])
    assert client.delete(f"/api/v1/keys/{own}", headers=admin_headers).status_code == 204
    successor = {"X-API-Key": second["key"]}
    _error(client.delete(f"/api/v1/keys/{second['id']}", headers=successor), 409, "last_admin_key")
    assert client.delete(f"/api/v1/keys/{own}", headers=successor).status_code == 204  # idempotent


def test_a_key_cannot_revoke_a_key_holding_scopes_it_lacks(
    client: FlaskClient, admin_headers: dict[str, str], make_api_key: Any
) -> None:
    keys_admin = make_api_key(["keys:admin", "runs:read"])
    other_admin = _create_key(client, admin_headers, ["admin"])
    refused = client.delete(f"/api/v1/keys/{other_admin['id']}", headers=keys_admin)
    assert "admin" in _error(refused, 403, "forbidden")["message"]
    reader = _create_key(client, admin_headers, ["runs:read"])
    assert client.delete(f"/api/v1/keys/{reader['id']}", headers=keys_admin).status_code == 204

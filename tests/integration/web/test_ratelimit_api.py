"""The API meters callers: per key/user, logins per IP, 429 with Retry-After, 503 without Redis."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from agent33.config import RateSpec, Settings
from agent33.db import session_scope
from agent33.db.models import AuditEvent
from web import create_app

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db", "empty_rate_buckets")]

ME = "/api/v1/auth/me"
LOGIN = "/api/v1/auth/token"


def _app(settings: Settings, **changes: Any) -> Flask:
    return create_app(settings.replace(**changes))


@pytest.fixture
def limited(settings: Settings, app: Flask) -> FlaskClient:
    """3 requests at once, then one per minute; 2 login attempts per IP per minute."""
    return _app(
        settings, rate_limit=RateSpec(1, 60), rate_burst=3, login_rate_limit=RateSpec(2, 60)
    ).test_client()


def _assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "error": {
            "code": "rate_limited",
            "message": response.get_json()["error"]["message"],
            "fields": {},
        }
    }
    assert "rate limit exceeded" in response.get_json()["error"]["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60


def test_request_over_the_burst_is_429_with_retry_after(
    limited: FlaskClient, make_api_key: Any
) -> None:
    headers = make_api_key(["runs:read"])
    for _ in range(3):
        assert limited.get(ME, headers=headers).status_code == 200
    _assert_rate_limited(limited.get(ME, headers=headers))


def test_another_key_has_its_own_budget(limited: FlaskClient, make_api_key: Any) -> None:
    noisy, quiet = make_api_key(["runs:read"]), make_api_key(["runs:read"])
    for _ in range(4):
        limited.get(ME, headers=noisy)
    _assert_rate_limited(limited.get(ME, headers=noisy))
    assert limited.get(ME, headers=quiet).status_code == 200


def test_logins_are_limited_per_client_ip(limited: FlaskClient, make_user: Any) -> None:
    make_user("grace", "right password", ["runs:read"])
    wrong = {"username": "grace", "password": "guess"}
    assert [limited.post(LOGIN, json=wrong).status_code for _ in range(2)] == [401, 401]
    right = {"username": "grace", "password": "right password"}
    _assert_rate_limited(limited.post(LOGIN, json=right))  # even the right password waits
    elsewhere = limited.post(LOGIN, json=right, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert elsewhere.status_code == 200


def test_jwt_callers_are_limited_per_subject(limited: FlaskClient, make_user: Any) -> None:
    make_user("hopper", "cobol rules", ["runs:read"])
    token = limited.post(LOGIN, json={"username": "hopper", "password": "cobol rules"})
    bearer = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    for _ in range(3):
        assert limited.get(ME, headers=bearer).status_code == 200
    _assert_rate_limited(limited.get(ME, headers=bearer))


def test_zero_disables_the_limits(settings: Settings, app: Flask, make_api_key: Any) -> None:
    client = _app(settings, rate_limit=None, rate_burst=1, login_rate_limit=None).test_client()
    headers = make_api_key(["runs:read"])
    assert {client.get(ME, headers=headers).status_code for _ in range(10)} == {200}
    wrong = {"username": "nobody", "password": "x"}
    assert {client.post(LOGIN, json=wrong).status_code for _ in range(12)} == {401}


def test_health_is_never_limited(settings: Settings, app: Flask) -> None:
    client = _app(settings, rate_limit=RateSpec(1, 3600), rate_burst=1).test_client()
    assert all(client.get("/health").status_code in (200, 503) for _ in range(5))


def test_a_flood_is_audited_once_per_window(limited: FlaskClient, make_api_key: Any) -> None:
    headers = make_api_key(["runs:read"])
    statuses = [limited.get(ME, headers=headers).status_code for _ in range(8)]
    assert statuses.count(429) == 5
    with session_scope() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "auth.rate_limited")
        ).all()
    assert len(events) == 1
    assert events[0].outcome == "denied"
    assert events[0].principal and events[0].principal.startswith("api_key:")
    assert events[0].ip == "127.0.0.1"
    assert events[0].target == f"GET {ME}"


def test_redis_down_is_503_naming_redis_not_500(
    settings: Settings, app: Flask, make_api_key: Any
) -> None:
    client = _app(settings, redis_url="redis://127.0.0.1:1/0").test_client()
    response = client.get(ME, headers=make_api_key(["runs:read"]))
    assert response.status_code == 503, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "service_unavailable"
    assert "redis" in error["message"]
    assert error["fields"] == {"service": ["redis"]}
    assert response.headers["Retry-After"] == "5"
    login = client.post(LOGIN, json={"username": "x", "password": "y"})
    assert login.status_code == 503


def _key(admin: FlaskClient, headers: dict[str, str], **limits: Any) -> dict[str, str]:
    body = {"name": "load client", "scopes": ["runs:read"], **limits}
    created = admin.post("/api/v1/keys", json=body, headers=headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["rate_limit"] == limits.get("rate_limit")
    return {"X-API-Key": created.get_json()["key"]}


def test_a_key_with_its_own_limit_is_metered_by_it(
    limited: FlaskClient, admin_headers: dict[str, str]
) -> None:
    """An operator gives a load client a bigger budget; the default keys keep theirs."""
    loader = _key(limited, admin_headers, rate_limit="1000/minute", rate_burst=50)
    assert {limited.get(ME, headers=loader).status_code for _ in range(40)} == {200}
    tight = _key(limited, admin_headers, rate_limit="1/minute", rate_burst=2)
    assert [limited.get(ME, headers=tight).status_code for _ in range(2)] == [200, 200]
    _assert_rate_limited(limited.get(ME, headers=tight))
    unmetered = _key(limited, admin_headers, rate_limit="0")
    assert {limited.get(ME, headers=unmetered).status_code for _ in range(20)} == {200}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"rate_limit": "9999999999/minute"}, "rate_limit"),
        ({"rate_burst": 0}, "rate_burst"),
        ({"rate_burst": 10**20}, "rate_burst"),
    ],
)
def test_a_malformed_key_limit_is_400_naming_the_field(
    client: FlaskClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    sent = {"name": "x", "scopes": ["runs:read"], **body}
    response = client.post("/api/v1/keys", json=sent, headers=admin_headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert field in response.get_json()["error"]["fields"]

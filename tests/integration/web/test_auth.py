"""Every /api/v1 route needs credentials, scopes are enforced, and undeclared views are denied."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.views import MethodView

from agent33.config import Settings
from agent33.security.tokens import issue_token
from web import create_app
from web.auth import OPEN_ROUTES

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db")]


def _protected_requests(app: Flask) -> list[tuple[str, str]]:
    """(method, url) for every /api/v1 rule and method, with sample path arguments."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        values: dict[str, Any] = {}
        for name in rule.arguments:
            converter = rule._converters[name]
            values[name] = uuid.uuid4() if type(converter).__name__ == "UUIDConverter" else "x"
        for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
            url = adapter.build(rule.endpoint, values, method=method)
            if (method, url) not in OPEN_ROUTES:
                found.append((method, url))
    return found


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code
    return dict(error)


def test_every_api_route_requires_credentials(app: Flask, client: FlaskClient) -> None:
    requests = _protected_requests(app)
    assert len(requests) >= 8  # the scan must really cover the API
    for method, url in requests:
        response = client.open(url, method=method, json={})
        if url.startswith("/api/v1/webhooks/"):  # authenticated by their HMAC signature instead
            message = _assert_error(response, 401, "bad_signature")["message"]
            assert "webhook-signature" in message
            continue
        if url == "/api/v1/channels/x/x" and method in ("GET", "POST"):
            # A chat platform's webhook: its signature authenticates; no such channel here.
            _assert_error(response, 404, "not_found")
            continue
        error = _assert_error(response, 401, "unauthorized")
        assert "authentication required" in error["message"], (method, url)
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "a33_deadbeef_not-a-real-secret"},
        {"X-API-Key": "garbage"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic YWRhOnB3"},
    ],
)
def test_bad_credentials_are_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    _assert_error(client.get("/api/v1/runs", headers=headers), 401, "unauthorized")


def test_the_open_routes_need_no_credentials(client: FlaskClient) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 200
    response = client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"})
    _assert_error(response, 401, "unauthorized")


def test_key_with_the_scope_is_allowed(client: FlaskClient, make_api_key: Any) -> None:
    response = client.get("/api/v1/runs", headers=make_api_key(["runs:read"]))
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_key_lacking_the_scope_gets_403_naming_it(client: FlaskClient, make_api_key: Any) -> None:
    headers = make_api_key(["runs:read"])
    error = _assert_error(client.get("/api/v1/workflows", headers=headers), 403, "forbidden")
    assert "workflows:read" in error["message"]
    error = _assert_error(
        client.post("/api/v1/keys", headers=headers, json={"name": "k", "scopes": ["runs:read"]}),
        403,
        "forbidden",
    )
    assert "keys:admin" in error["message"]


def test_view_without_declared_scopes_is_denied_even_to_admin(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    app = create_app(settings)

    class Forgotten(MethodView):
        def get(self) -> dict[str, bool]:
            return {"leaked": True}

    app.add_url_rule("/api/v1/forgotten", view_func=Forgotten.as_view("forgotten"))
    app.add_url_rule("/api/v1/forgotten-fn", view_func=lambda: {"leaked": True})
    client = app.test_client()
    for url in ("/api/v1/forgotten", "/api/v1/forgotten-fn"):
        error = _assert_error(client.get(url, headers=admin_headers), 403, "forbidden")
        assert "denied by default" in error["message"]


def test_login_issues_a_token_carrying_the_users_scopes(
    client: FlaskClient, make_user: Any
) -> None:
    make_user("ada", "correct horse", ["runs:read"])
    response = client.post(
        "/api/v1/auth/token", json={"username": "ada", "password": "correct horse"}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    assert body["scopes"] == ["runs:read"]
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/v1/runs", headers=bearer).status_code == 200
    _assert_error(client.get("/api/v1/workflows", headers=bearer), 403, "forbidden")


@pytest.mark.parametrize(
    ("username", "password"), [("ada", "wrong horse"), ("nobody", "correct horse")]
)
def test_bad_login_is_401_with_one_message(
    client: FlaskClient, make_user: Any, username: str, password: str
) -> None:
    make_user("ada", "correct horse", ["runs:read"])
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    error = _assert_error(response, 401, "unauthorized")
    assert error["message"] == "invalid username or password"
    assert "access_token" not in response.get_data(as_text=True)


def test_expired_token_is_401(client: FlaskClient, settings: Settings) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=settings.jwt_expire_minutes + 1)
    token = issue_token(settings, "ada", ["admin"], now=past)
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert "expired" in _assert_error(response, 401, "unauthorized")["message"]


def test_key_created_through_the_api_works_and_is_listed_without_secrets(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/keys", headers=admin_headers, json={"name": "ci", "scopes": ["runs:read"]}
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["key"].startswith(f"a33_{created['prefix']}_")
    assert client.get("/api/v1/runs", headers={"X-API-Key": created["key"]}).status_code == 200

    listing = client.get("/api/v1/keys", headers=admin_headers)
    assert listing.status_code == 200
    text = listing.get_data(as_text=True)
    assert created["key"] not in text
    assert "key_hash" not in text
    entry = next(k for k in listing.get_json()["items"] if k["id"] == created["id"])
    assert entry["last_used_at"] is not None
    assert "key" not in entry


def test_revoked_key_is_refused(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/keys", headers=admin_headers, json={"name": "tmp", "scopes": ["runs:read"]}
    ).get_json()
    response = client.delete(f"/api/v1/keys/{created['id']}", headers=admin_headers)
    assert response.status_code == 204
    response = client.get("/api/v1/runs", headers={"X-API-Key": created["key"]})
    assert "revoked" in _assert_error(response, 401, "unauthorized")["message"]


def test_revoking_an_unknown_key_is_404(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    response = client.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=admin_headers)
    _assert_error(response, 404, "not_found")


def test_a_key_cannot_grant_scopes_it_does_not_hold(client: FlaskClient, make_api_key: Any) -> None:
    headers = make_api_key(["keys:admin"])
    response = client.post(
        "/api/v1/keys", headers=headers, json={"name": "escalate", "scopes": ["admin"]}
    )
    assert "admin" in _assert_error(response, 403, "forbidden")["message"]


def test_unknown_scope_is_a_400_naming_it(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/keys", headers=admin_headers, json={"name": "k", "scopes": ["runs:delete"]}
    )
    error = _assert_error(response, 400, "validation_error")
    assert "scopes" in error["fields"]

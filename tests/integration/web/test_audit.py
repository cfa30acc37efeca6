"""Security events land in the audit log (who, from where, how it ended) without any secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.security.audit import is_secret_name, scrub
from web.auth import require_scopes

# Logins here must not spend the shared per-IP login budget of other test modules.
pytestmark = [pytest.mark.security, pytest.mark.usefixtures("committed_db", "empty_rate_buckets")]

AUDIT = "/api/v1/audit"
PASSWORD = "tr0ub4dor&3-unique"


def _events(client: FlaskClient, admin: dict[str, str], action: str) -> list[dict[str, Any]]:
    response = client.get(AUDIT, query_string={"action": action}, headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
    items = response.get_json()["items"]
    assert isinstance(items, list)
    return items


def _login(client: FlaskClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def test_login_success_and_failure_are_recorded_without_the_password(
    client: FlaskClient, make_user: Any, admin_headers: dict[str, str]
) -> None:
    make_user("ada", PASSWORD, ["runs:read"])
    token = _login(client, "ada", PASSWORD).get_json()["access_token"]
    assert _login(client, "ada", "wrong-guess").status_code == 401
    assert _login(client, "ghost", "wrong-guess").status_code == 401

    [ok] = _events(client, admin_headers, "auth.login")
    assert (ok["principal"], ok["ip"], ok["outcome"]) == ("ada", "127.0.0.1", "ok")
    failed = _events(client, admin_headers, "auth.login_failed")
    assert [(e["principal"], e["outcome"]) for e in failed] == [
        ("ghost", "failed"),  # newest first
        ("ada", "failed"),
    ]
    assert all(e["ip"] == "127.0.0.1" for e in failed)
    everything = client.get(AUDIT, headers=admin_headers).get_data(as_text=True)
    for secret in (PASSWORD, "wrong-guess", token):
        assert secret not in everything


def test_key_create_and_revoke_are_recorded_without_the_raw_key(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["runs:read"]}, headers=admin_headers
    )
    assert created.status_code == 201
    key = created.get_json()
    assert client.delete(f"/api/v1/keys/{key['id']}", headers=admin_headers).status_code == 204

    [create] = _events(client, admin_headers, "keys.create")
    assert create["principal"].startswith("api_key:")
    assert (create["ip"], create["outcome"]) == ("127.0.0.1", "ok")
    assert create["target"] == f"api_key:{key['id']}"
    assert create["details"] == {"name": "ci", "prefix": key["prefix"], "scopes": ["runs:read"]}
    [revoke] = _events(client, admin_headers, "keys.revoke")
    assert revoke["target"] == f"api_key:{key['id']}"
    everything = client.get(AUDIT, headers=admin_headers).get_data(as_text=True)
    assert key["key"] not in everything
    assert admin_headers["X-API-Key"] not in everything


def test_a_403_is_recorded_with_the_path_and_the_missing_scope(
    client: FlaskClient, make_api_key: Any, admin_headers: dict[str, str]
) -> None:
    reader = make_api_key(["runs:read"])
    assert client.get(AUDIT, headers=reader).status_code == 403
    [denied] = _events(client, admin_headers, "auth.denied")
    assert denied["principal"].startswith("api_key:")
    assert (denied["ip"], denied["outcome"], denied["target"]) == (
        "127.0.0.1",
        "denied",
        f"GET {AUDIT}",
    )
    assert denied["details"]["status"] == 403
    assert denied["details"]["path"] == AUDIT
    assert denied["details"]["missing_scopes"] == ["admin"]
    assert reader["X-API-Key"] not in json.dumps(denied)


def test_a_401_is_recorded_without_a_principal(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    bogus = "a33_bogus_key_that_does_not_exist"
    ip = "10.44.0.1"  # an address of its own: denials are bounded per address and minute
    response = client.get(
        "/api/v1/runs", headers={"X-API-Key": bogus}, environ_base={"REMOTE_ADDR": ip}
    )
    assert response.status_code == 401
    [denied] = _events(client, admin_headers, "auth.denied")
    assert (denied["principal"], denied["ip"], denied["details"]["status"]) == (None, ip, 401)
    assert bogus not in json.dumps(denied)


def test_the_audit_endpoint_needs_admin_and_pages_newest_first(
    client: FlaskClient, make_api_key: Any, admin_headers: dict[str, str]
) -> None:
    assert client.get(AUDIT).status_code == 401
    assert client.get(AUDIT, headers=make_api_key(["keys:admin"])).status_code == 403
    for name in ("k1", "k2", "k3"):
        body = {"name": name, "scopes": ["runs:read"]}
        assert client.post("/api/v1/keys", json=body, headers=admin_headers).status_code == 201
    page = client.get(
        AUDIT,
        query_string={"action": "keys.create", "limit": 2, "offset": 1},
        headers=admin_headers,
    ).get_json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [item["details"]["name"] for item in page["items"]] == ["k2", "k1"]
    bad = client.get(AUDIT, query_string={"limit": 0}, headers=admin_headers)
    assert bad.status_code == 400


def test_me_describes_the_caller(client: FlaskClient, make_api_key: Any, make_user: Any) -> None:
    assert client.get("/api/v1/auth/me").status_code == 401
    key_me = client.get("/api/v1/auth/me", headers=make_api_key(["runs:read"])).get_json()
    assert key_me["kind"] == "api_key"
    assert key_me["subject"].startswith("api_key:")
    assert key_me["scopes"] == ["runs:read"]
    assert key_me["key_id"]
    make_user("lin", PASSWORD, ["workflows:read"])
    token = _login(client, "lin", PASSWORD).get_json()["access_token"]
    jwt_me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert jwt_me.get_json() == {"subject": "lin", "kind": "jwt", "scopes": ["workflows:read"]}


def test_require_scopes_refuses_an_empty_declaration() -> None:
    with pytest.raises(TypeError, match="require_authenticated"):
        require_scopes()


def test_scrub_drops_secret_named_keys_recursively() -> None:
    assert [is_secret_name(n) for n in ("password", "api_key", "key_id", "access_token")] == [
        True,
        True,
        False,
        True,
    ]
    details = {"name": "x", "password": "p", "nested": {"client_secret": "s", "key_id": 1}}
    assert scrub(details) == {"name": "x", "nested": {"key_id": 1}}

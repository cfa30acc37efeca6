"""`/api/v1/secrets`: values go in, only names and timestamps come out, and scopes are enforced."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.vault import get_secret, vault_for

pytestmark = pytest.mark.security

PLAINTEXT = "sk-live-7f3a9c1e-do-not-leak"


class Recorder:
    """Every response body a test saw, to prove the plaintext never came back."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, **kw: Any) -> TestResponse:
        response = self.client.open(path, method=method, **kw)
        self.bodies.append(response.get_data(as_text=True) + str(response.headers))
        return response


@pytest.fixture
def call(client: FlaskClient) -> Recorder:
    return Recorder(client)


def _assert_no_leak(
    call: Recorder, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call.bodies
    assert not [body for body in call.bodies if PLAINTEXT in body]
    captured = capsys.readouterr()
    assert PLAINTEXT not in caplog.text + captured.out + captured.err


def test_set_list_replace_delete(
    call: Recorder,
    admin_headers: dict[str, str],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put = call("PUT", "/api/v1/secrets/API_TOKEN", json={"value": PLAINTEXT}, headers=admin_headers)
    assert put.status_code == 204 and put.get_data() == b""
    listing = call("GET", "/api/v1/secrets", headers=admin_headers)
    assert listing.status_code == 200
    body = listing.get_json()
    assert body["total"] == 1
    assert set(body["items"][0]) == {"name", "created_at", "updated_at", "rotated_at"}
    assert body["items"][0]["name"] == "API_TOKEN"
    with session_scope() as session:
        assert get_secret(session=session, vault=vault_for(settings), name="API_TOKEN") == PLAINTEXT

    again = call("PUT", "/api/v1/secrets/API_TOKEN", json={"value": "v2"}, headers=admin_headers)
    assert again.status_code == 204
    with session_scope() as session:
        assert get_secret(session=session, vault=vault_for(settings), name="API_TOKEN") == "v2"

    assert call("DELETE", "/api/v1/secrets/API_TOKEN", headers=admin_headers).status_code == 204
    missing = call("DELETE", "/api/v1/secrets/API_TOKEN", headers=admin_headers)
    assert missing.status_code == 404 and "API_TOKEN" in missing.get_json()["error"]["message"]
    assert call("GET", "/api/v1/secrets", headers=admin_headers).get_json()["items"] == []
    _assert_no_leak(call, caplog, capsys)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"value": ""}, "value"), ({}, "value"), ({"value": "x" * 65537}, "value")],
)
def test_bad_values_are_400(
    call: Recorder, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = call("PUT", "/api/v1/secrets/GOOD", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert field in str(response.get_json()["error"]["fields"])


def test_bad_name_is_400_and_the_value_is_not_echoed(
    call: Recorder,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = call(
        "PUT", "/api/v1/secrets/9-bad", json={"value": PLAINTEXT}, headers=admin_headers
    )
    assert response.status_code == 400
    assert "name" in response.get_json()["error"]["fields"]
    unknown = call(
        "PUT", "/api/v1/secrets/OK", json={"value": PLAINTEXT, "x": 1}, headers=admin_headers
    )
    assert unknown.status_code == 400
    _assert_no_leak(call, caplog, capsys)


def test_scopes_are_enforced(call: Recorder, make_api_key: Any) -> None:
    reader = make_api_key(["secrets:read"])
    writer = make_api_key(["secrets:write"])
    other = make_api_key(["runs:read", "keys:admin"])
    assert call("GET", "/api/v1/secrets").status_code == 401
    assert call("PUT", "/api/v1/secrets/A", json={"value": "v"}).status_code == 401
    assert call("DELETE", "/api/v1/secrets/A").status_code == 401
    assert call("GET", "/api/v1/secrets", headers=other).status_code == 403
    denied = call("PUT", "/api/v1/secrets/A", json={"value": "v"}, headers=reader)
    assert denied.status_code == 403 and "secrets:write" in denied.get_json()["error"]["message"]
    assert call("DELETE", "/api/v1/secrets/A", headers=reader).status_code == 403
    assert call("GET", "/api/v1/secrets", headers=writer).status_code == 403
    assert call("PUT", "/api/v1/secrets/A", json={"value": "v"}, headers=writer).status_code == 204
    assert call("GET", "/api/v1/secrets", headers=reader).get_json()["total"] == 1
    assert call("DELETE", "/api/v1/secrets/A", headers=writer).status_code == 204


def test_no_operation_documents_a_value_in_a_response(call: Recorder) -> None:
    spec = call("GET", "/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "value" not in schemas["Secret"]["properties"]
    for operation in spec["paths"]["/api/v1/secrets/{name}"].values():
        if isinstance(operation, dict) and "responses" in operation:
            assert set(operation["responses"]) <= {
                "204",
                "400",
                "401",
                "403",
                "404",
                "422",
                "default",
            }

"""Bodies no parser should see are a 400 on every route, before authentication and before any
view parses them: JSON nested 1,000 deep, 5,000-digit integers, NaN; a body over the size limit
is a 413. Everything answers the JSON envelope, never a 500."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from web import MAX_BODY_BYTES
from web.limits import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS

pytestmark = pytest.mark.security

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_INPUTS = '{"inputs": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}"
LONG_INTEGER = '{"version": ' + "9" * 5000 + "}"
LONG_INPUT = '{"inputs": {"n": -' + "7" * 5000 + "}}"
HUGE_EXPONENT = '{"inputs": {"n": 1e999}}'
NAN = '{"inputs": {"n": NaN}}'
ATTACKS = {
    "deep_array": (DEEP_ARRAY, "nested deeper"),
    "deep_inputs": (DEEP_INPUTS, "nested deeper"),
    "long_integer": (LONG_INTEGER, "out of range"),
    "long_input": (LONG_INPUT, "out of range"),
    "huge_exponent": (HUGE_EXPONENT, "out of range"),
    "nan": (NAN, "NaN is not a JSON value"),
}
ARGUMENTS = {"int": "1", "uuid": str(uuid.uuid4())}


def _url(rule: Rule) -> str:
    def fill(match: re.Match[str]) -> str:
        return ARGUMENTS.get(match[1] or "", "demo_greeting")

    return re.sub(r"<(?:([^:>]+):)?[^>]+>", fill, rule.rule)


def _body_routes(app: Flask) -> list[tuple[str, str]]:
    routes = {
        (method, _url(rule))
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) & BODY_METHODS
    }
    return sorted(routes)


def _refused(response: Any, status: int = 400) -> dict[str, Any]:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json"
    assert "Traceback" not in text
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "fields"}
    return dict(error)


def test_every_body_route_is_covered(app: Flask) -> None:
    routes = _body_routes(app)
    assert len(routes) > 25
    assert ("POST", "/api/v1/auth/token") in routes
    assert ("POST", "/api/v1/auth/refresh") in routes
    assert ("POST", "/api/v1/webhooks/demo_greeting") in routes


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("authenticated", [True, False], ids=["admin", "anonymous"])
def test_pathological_json_is_400_on_every_route(
    app: Flask, client: FlaskClient, admin_headers: dict[str, str], attack: str, authenticated: bool
) -> None:
    body, problem = ATTACKS[attack]
    headers = admin_headers if authenticated else {}
    for method, url in _body_routes(app):
        response = client.open(
            url, method=method, data=body, content_type="application/json", headers=headers
        )
        error = _refused(response)
        assert error["code"] == "invalid_json", (method, url)
        assert problem in error["message"], (method, url, error)
        assert error["fields"] == {"json": [error["message"]]}


def test_webhook_body_of_any_content_type_is_checked(client: FlaskClient) -> None:
    """The webhook route reads any body as JSON: text/plain gets no way around the limits."""
    response = client.post(
        "/api/v1/webhooks/demo_greeting", data=DEEP_ARRAY, content_type="text/plain"
    )
    assert "nested deeper" in _refused(response)["message"]


def test_the_position_of_a_long_number_is_named(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    body = '{"inputs": {"note": "' + "1" * 200 + '", "n": ' + "9" * 40 + "}}"
    response = client.post(
        "/api/v1/workflows/demo_greeting/runs",
        data=body,
        content_type="application/json",
        headers=admin_headers,
    )
    message = _refused(response)["message"]
    assert f"at byte {body.index('9' * 40)}" in message
    assert f"more than {MAX_NUMBER_DIGITS} digits" in message


@pytest.mark.usefixtures("stored_workflows")
def test_bodies_within_the_limits_are_accepted(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    """Limits that refuse ordinary input would be no fix: the deepest allowed nesting, the
    longest allowed number, and long digits, brackets and NaN inside strings all start a run."""
    depth = MAX_JSON_DEPTH - 2  # the body's own object and `inputs` are two levels
    nested = '{"a": ' * depth + "1" + "}" * depth
    number = "9" * MAX_NUMBER_DIGITS
    text = '"NaN [[[[ {{{{ \\" ' + "7" * 5000 + ' 1e999"'
    body = f'{{"inputs": {{"name": "x", "nested": {nested}, "number": {number}, "text": {text}}}}}'
    response = client.post(
        "/api/v1/workflows/demo_greeting/runs",
        data=body,
        content_type="application/json",
        headers=admin_headers,
    )
    assert response.status_code == 202, response.get_data(as_text=True)


def test_one_level_too_deep_is_refused(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    body = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    response = client.post(
        "/api/v1/workflows/validate",
        data=body,
        content_type="application/json",
        headers=admin_headers,
    )
    assert "nested deeper" in _refused(response)["message"]


def test_body_over_the_size_limit_is_413_before_authentication(client: FlaskClient) -> None:
    body = '{"inputs": {"text": "' + "x" * MAX_BODY_BYTES + '"}}'
    response = client.post(
        "/api/v1/workflows/demo_greeting/runs", data=body, content_type="application/json"
    )
    assert _refused(response, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/runs?limit=" + "9" * 5000,
        "/api/v1/runs?offset=-" + "9" * 5000,
        "/api/v1/workflows/demo_greeting?version=" + "9" * 5000,
        "/api/v1/audit?limit=1e999",
    ],
)
def test_long_integers_in_the_query_are_400_naming_the_field(
    client: FlaskClient, admin_headers: dict[str, str], url: str
) -> None:
    error = _refused(client.get(url, headers=admin_headers))
    assert error["code"] == "validation_error"
    assert url.split("?")[1].split("=")[0] in error["fields"]

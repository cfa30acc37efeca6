"""Every failure answers with the JSON envelope: right status, field names, never HTML."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33 import db
from agent33.config import Settings
from web import create_app

pytestmark = pytest.mark.usefixtures("committed_db")

RUNS_URL = "/api/v1/workflows/demo_greeting/runs"


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json"
    assert "<html" not in text.lower()
    assert "Traceback" not in text
    error = response.get_json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "fields"}
    return dict(error)


def test_malformed_json_is_400(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        RUNS_URL, data='{"inputs": {', content_type="application/json", headers=admin_headers
    )
    error = _error(response, 400, "invalid_json")
    assert "not valid JSON" in error["message"]


def test_inputs_that_are_not_an_object_are_400_naming_the_field(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(RUNS_URL, json={"inputs": "x"}, headers=admin_headers)
    error = _error(response, 400, "validation_error")
    assert error["fields"] == {"inputs": ["Not a valid mapping type."]}
    assert "inputs" in error["message"]


def test_unknown_body_field_is_400_naming_it(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(RUNS_URL, json={"inputz": {}}, headers=admin_headers)
    assert _error(response, 400, "validation_error")["fields"] == {"inputz": ["Unknown field."]}


def test_out_of_range_query_parameter_is_400(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.get("/api/v1/runs?limit=0", headers=admin_headers)
    assert "limit" in _error(response, 400, "validation_error")["fields"]
    response = client.get("/api/v1/runs?state=exploded", headers=admin_headers)
    assert "state" in _error(response, 400, "validation_error")["fields"]


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("get", "/api/v1/runs?offset=9223372036854775808", "offset"),
        ("get", "/api/v1/workflows/demo_greeting?version=100000000000000000000", "version"),
        ("delete", "/api/v1/agents/assistant?version=100000000000000000000", "version"),
    ],
)
def test_integer_beyond_the_database_range_is_400_naming_it(
    client: FlaskClient, admin_headers: dict[str, str], method: str, url: str, field: str
) -> None:
    response = getattr(client, method)(url, headers=admin_headers)
    assert field in _error(response, 400, "validation_error")["fields"]


def test_body_integer_beyond_the_database_range_is_400_naming_it(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(RUNS_URL, json={"version": 2**64}, headers=admin_headers)
    assert "version" in _error(response, 400, "validation_error")["fields"]


def test_body_that_is_not_json_is_415(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        RUNS_URL, data='{"inputs": {}}', content_type="text/plain", headers=admin_headers
    )
    _error(response, 415, "unsupported_media_type")


def test_unknown_url_is_404_json(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    _error(client.get("/no/such/page"), 404, "not_found")
    _error(client.get("/api/v1/nothing-here", headers=admin_headers), 404, "not_found")


def test_bad_run_id_is_404_json(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    _error(client.get("/api/v1/runs/not-a-uuid", headers=admin_headers), 404, "not_found")


def test_domain_not_found_is_404_json(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    response = client.get("/api/v1/workflows/no_such_workflow", headers=admin_headers)
    assert "no_such_workflow" in _error(response, 404, "not_found")["message"]


def test_wrong_method_is_405_json_with_allow(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.delete("/api/v1/runs", headers=admin_headers)
    _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    _error(client.put("/health"), 405, "method_not_allowed")


def test_unexpected_exception_is_500_json_with_traceback_only_in_the_log(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    def explode() -> None:
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/explode", view_func=explode)
    with caplog.at_level(logging.ERROR, logger="web.errors"):
        response = app.test_client().get("/explode")
    error = _error(response, 500, "internal_error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert error["message"] == "internal server error"
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret internal detail" in str(logged[0].exc_info[1])


def test_database_down_is_503_json(settings: Settings) -> None:
    down = settings.replace(database_url="postgresql+psycopg://postgres@127.0.0.1:1/agent33")
    try:
        client = create_app(down).test_client()  # rebinds this process's engine to a dead port
        response = client.get("/api/v1/runs", headers={"X-API-Key": "a33_deadbeef_whatever"})
    finally:
        db.configure(settings)
    _error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"]


@pytest.mark.security
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RecursionError("maximum recursion depth exceeded"), 400, "invalid_input"),
        (OverflowError("int too large to convert to float"), 400, "invalid_input"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 400, "invalid_input"),
        (ValueError("Exceeds the limit (4300 digits) for integer string conversion"), 400, ""),
        (ValueError("a server-side bug"), 500, "internal_error"),
        (KeyError("a server-side bug"), 500, "internal_error"),
    ],
)
def test_errors_the_input_caused_are_400_and_server_faults_stay_500(
    settings: Settings, error: Exception, status: int, code: str
) -> None:
    """Past the schemas, a conversion the input broke is still the client's 400 (its traceback
    is logged as a warning); any other error is a bare 500."""
    app = create_app(settings)

    def fail() -> None:
        raise error

    app.add_url_rule("/fail", view_func=fail)
    response = app.test_client().get("/fail")
    body = _error(response, status, code or "invalid_input")
    assert "server-side bug" not in body["message"]

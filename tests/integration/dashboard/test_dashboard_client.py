"""The dashboard through the Flask test client: log-in, CSRF, scopes, and form field errors."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine.service import list_runs
from agent33.security.tokens import issue_token
from tests.integration.dashboard.helpers import csrf_token, log_in_with_key
from tests.plugins.web import MakeApiKey, MakeUser

pytestmark = [pytest.mark.dashboard, pytest.mark.usefixtures("empty_rate_buckets")]

COUNTED = {
    "name": "counted",
    "inputs": {
        "type": "object",
        "properties": {"count": {"type": "integer", "minimum": 1}, "label": {"type": "string"}},
        "required": ["count"],
    },
    "steps": [{"id": "only", "action": "transform", "with": {"n": "{{ inputs.count }}"}}],
}


def run_count() -> int:
    with session_scope() as session:
        return list_runs(session=session)[1]


@pytest.mark.parametrize("path", ["/", "/runs", "/workflows", f"/runs/{uuid.uuid4()}/live"])
def test_pages_redirect_to_login_without_a_session(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("name", ["dashboard.js", "dashboard.css"])
def test_static_files_are_served_without_a_session(client: FlaskClient, name: str) -> None:
    answer = client.get(f"/ui/static/{name}")
    assert answer.status_code == 200 and len(answer.data) > 1000
    answer.close()


def test_health_metrics_and_api_are_unchanged_by_the_dashboard(client: FlaskClient) -> None:
    assert client.get("/health").status_code in (200, 503)  # JSON either way
    assert client.get("/health").is_json
    assert client.get("/metrics").status_code == 200
    refused = client.get("/api/v1/runs")
    assert refused.status_code == 401 and refused.is_json


def test_session_cookie_is_httponly_and_samesite_lax(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    token = csrf_token(client)
    answer = client.post(
        "/login", data={"api_key": admin_headers["X-API-Key"], "csrf_token": token}
    )
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development; production sets it


def test_password_log_in_and_wrong_password(client: FlaskClient, make_user: MakeUser) -> None:
    make_user("ops", "correct horse battery", ["runs:read"])
    token = csrf_token(client)
    wrong = client.post("/login", data={"username": "ops", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "invalid username or password" in wrong.get_data(as_text=True).lower()
    assert client.get("/runs").status_code == 302
    right = client.post(
        "/login?next=/runs",
        data={"username": "ops", "password": "correct horse battery", "csrf_token": token},
    )
    assert right.status_code == 302 and right.headers["Location"] == "/runs"
    page = client.get("/runs")
    assert page.status_code == 200 and "ops" in page.get_data(as_text=True)


def test_log_in_never_redirects_off_site(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    token = csrf_token(client)
    answer = client.post(
        "/login?next=//evil.example/x",
        data={"api_key": admin_headers["X-API-Key"], "csrf_token": token},
    )
    assert answer.headers["Location"] == "/runs"


def test_posts_without_the_csrf_token_are_refused(
    client: FlaskClient, admin_headers: dict[str, str], stored_workflows: None
) -> None:
    assert client.post("/login", data={"api_key": admin_headers["X-API-Key"]}).status_code == 400
    token = log_in_with_key(client, admin_headers)
    before = run_count()
    start = "/workflows/example_approval/runs"
    missing = client.post(start, data={"release": "v2"})
    assert missing.status_code == 400
    assert "CSRF" in missing.get_data(as_text=True)
    forged = client.post(start, data={"release": "v2", "csrf_token": token[:-2] + "xx"})
    assert forged.status_code == 400
    assert client.post(f"/runs/{uuid.uuid4()}/cancel").status_code == 400
    assert run_count() == before
    ok = client.post(start, data={"release": "v2", "csrf_token": token})
    assert ok.status_code == 302 and run_count() == before + 1


def test_a_key_without_the_scope_gets_403(
    client: FlaskClient,
    make_api_key: MakeApiKey,
    admin_headers: dict[str, str],
    stored_workflows: None,
) -> None:
    token = log_in_with_key(client, make_api_key(["runs:read"]))
    assert client.get("/runs").status_code == 200
    assert client.get("/workflows").status_code == 403
    assert client.get("/dead-letters").status_code == 403
    refused = client.post(
        "/workflows/example_approval/runs", data={"release": "v2", "csrf_token": token}
    )
    assert refused.status_code == 403
    assert "missing scope runs:write" in refused.get_data(as_text=True)
    assert run_count() == 0
    page = client.get("/runs").get_data(as_text=True)
    assert "/workflows" not in page.split("<main>")[0]  # no link to a page it may not open
    audit = client.get("/api/v1/audit?action=auth.denied", headers=admin_headers).get_json()
    targets = {row["target"] for row in audit["items"]}
    assert {"GET /workflows", "POST /workflows/example_approval/runs"} <= targets


def test_a_revoked_key_ends_the_session(
    client: FlaskClient, make_api_key: MakeApiKey, admin_headers: dict[str, str]
) -> None:
    headers = make_api_key(["runs:read"], name="short-lived")
    log_in_with_key(client, headers)
    assert client.get("/runs").status_code == 200
    keys = client.get("/api/v1/keys", headers=admin_headers).get_json()["items"]
    key_id = next(key["id"] for key in keys if key["name"] == "short-lived")
    assert client.delete(f"/api/v1/keys/{key_id}", headers=admin_headers).status_code in (200, 204)
    assert client.get("/runs").status_code == 302


def test_bad_form_input_shows_the_apis_field_errors(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    assert client.post("/api/v1/workflows", json=COUNTED, headers=admin_headers).status_code == 201
    api = client.post(
        "/api/v1/workflows/counted/runs", json={"inputs": {"count": 0}}, headers=admin_headers
    )
    api_message = api.get_json()["error"]["fields"]["inputs.count"][0]
    token = log_in_with_key(client, admin_headers)

    too_small = client.post("/workflows/counted/runs", data={"count": "0", "csrf_token": token})
    assert too_small.status_code == api.status_code == 400
    page = too_small.get_data(as_text=True)
    assert f'data-field="count">{api_message}' in page.replace("&#39;", "'")
    assert 'value="0"' in page  # what was typed is shown again

    not_a_number = client.post(
        "/workflows/counted/runs", data={"count": "many", "csrf_token": token}
    )
    assert not_a_number.status_code == 400
    text = not_a_number.get_data(as_text=True).replace("&#39;", "'")
    assert "data-field=\"count\">'many' is not of type 'integer'" in text

    missing = client.post("/workflows/counted/runs", data={"label": "x", "csrf_token": token})
    text = missing.get_data(as_text=True).replace("&#39;", "'")
    assert "data-field=\"count\">'count' is a required property" in text
    assert run_count() == 0

    started = client.post("/workflows/counted/runs", data={"count": "3", "csrf_token": token})
    assert started.status_code == 302 and started.headers["Location"].startswith("/runs/")


def test_bad_run_filters_show_the_apis_messages(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    log_in_with_key(client, admin_headers)
    answer = client.get("/runs?state=finished")
    assert answer.status_code == 400
    assert 'data-field="state"' in answer.get_data(as_text=True)


def test_unknown_run_is_a_404_page(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    log_in_with_key(client, admin_headers)
    answer = client.get(f"/runs/{uuid.uuid4()}")
    assert answer.status_code == 404
    assert answer.mimetype == "text/html"


def test_form_bodies_are_not_held_to_the_json_body_limits(client: FlaskClient) -> None:
    """A form field that would be an out-of-range JSON number is only text to a form."""
    token = csrf_token(client)
    answer = client.post(
        "/login", data={"username": "1e999" + "9" * 40, "password": "x", "csrf_token": token}
    )
    assert answer.status_code == 401
    assert "invalid username or password" in answer.get_data(as_text=True)
    api = client.post(
        "/api/v1/auth/token",
        data="username=1e999&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert api.status_code == 400  # the API's own limits are unchanged


def test_access_token_log_in_keeps_the_tokens_scopes_and_expiry(
    client: FlaskClient, make_user: MakeUser, settings: Settings
) -> None:
    make_user("viewer", "correct horse battery", ["runs:read", "workflows:read"])
    narrow = issue_token(settings, "viewer", ["runs:read"])
    token = csrf_token(client)
    assert client.post("/login", data={"token": narrow, "csrf_token": token}).status_code == 302
    assert client.get("/runs").status_code == 200
    assert client.get("/workflows").status_code == 403  # the user may; the token may not

    lifetime = dt.timedelta(minutes=settings.jwt_expire_minutes)
    almost_expired = issue_token(
        settings,
        "viewer",
        ["runs:read"],
        now=dt.datetime.now(dt.UTC) - lifetime + dt.timedelta(seconds=3),
    )
    token = csrf_token(client, "/runs")
    answer = client.post("/login", data={"token": almost_expired, "csrf_token": token})
    assert answer.status_code == 302
    assert client.get("/runs").status_code == 200
    time.sleep(3.5)
    assert client.get("/runs").status_code == 302  # the session ends with the token

    expired = client.post(
        "/login", data={"token": almost_expired, "csrf_token": csrf_token(client)}
    )
    assert expired.status_code == 401
    assert "access token has expired" in expired.get_data(as_text=True)

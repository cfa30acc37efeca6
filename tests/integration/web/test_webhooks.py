"""Signed inbound webhooks (Standard Webhooks) start runs; no variant of a captured delivery
starts a second run, malformed headers are 4xx JSON, and bad signatures spend a failure budget."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from agent33.config import RateSpec, Settings
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.security.signatures import (
    ID_HEADER,
    LEGACY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from agent33.security.vault import Vault, keys_for, set_secret
from web import create_app

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("configured", "empty_rate_buckets")]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL = "/api/v1/webhooks/demo_greeting"


@pytest.fixture
def configured(settings: Settings, stored_workflows: None) -> None:
    with session_scope() as session:
        set_secret(
            session=session,
            vault=Vault(keys_for(settings)),
            name="WEBHOOK_DEMO_GREETING",
            value=SECRET,
        )


def _body() -> bytes:
    return json.dumps({"name": f"hook {uuid.uuid4().hex[:6]}"}).encode()


def _delivery(body: bytes, webhook_id: str | None = None, **kw: Any) -> dict[str, str]:
    return sign(SECRET, webhook_id or f"msg_{uuid.uuid4().hex}", body, **kw)


def _post(client: FlaskClient, body: bytes, headers: Any, url: str = URL, **kw: Any) -> Any:
    if isinstance(headers, dict):
        headers = {"Content-Type": "application/json", **headers}
    return client.post(url, data=body, headers=headers, **kw)


def _webhook_runs() -> int:
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Run).where(Run.created_by.like("webhook:%"))
            )
            or 0
        )


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code, error
    return dict(error)


def test_a_signed_event_starts_a_run_without_an_api_key(client: FlaskClient) -> None:
    body = _body()
    response = _post(client, body, _delivery(body))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["workflow"] == "demo_greeting"
    again = _post(client, body, _delivery(body))
    assert again.status_code == 202, "a new webhook-id is a new event"
    assert _webhook_runs() == 2


def test_a_senders_retry_of_one_id_returns_the_same_run(client: FlaskClient) -> None:
    body, now = _body(), int(time.time())
    first = _post(client, body, _delivery(body, "msg_retry", timestamp=now - 5))
    retry = _post(client, body, _delivery(body, "msg_retry", timestamp=now))  # new signature
    assert first.status_code == 202 and retry.status_code == 200, retry.get_json()
    assert first.get_json()["id"] == retry.get_json()["id"] and retry.get_json()["duplicate"]
    assert _webhook_runs() == 1


def _variants(headers: dict[str, str]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, headers, extra client kwargs) for a captured delivery dressed differently."""
    sig, wid, ts = headers[SIGNATURE_HEADER], headers[ID_HEADER], headers[TIMESTAMP_HEADER]
    upper = {name.upper(): value for name, value in headers.items()}
    return [
        ("as captured", headers, {}),
        ("header names in capitals", upper, {}),
        ("a query string", headers, {"query_string": {"x": "1"}}),
        ("another content type", {**headers, "Content-Type": "text/plain"}, {}),
        ("the signature twice", {**headers, SIGNATURE_HEADER: f"{sig} {sig}"}, {}),
        ("double spaces", {**headers, SIGNATURE_HEADER: f"{sig}  {sig}"}, {}),
        ("padded signature", {**headers, SIGNATURE_HEADER: f" {sig} "}, {}),
        ("an extra v2 entry", {**headers, SIGNATURE_HEADER: f"v2,abc {sig}"}, {}),
        ("a new webhook-id", {**headers, ID_HEADER: "msg_other"}, {}),
        ("the id in capitals", {**headers, ID_HEADER: wid.upper()}, {}),
        ("a leading zero", {**headers, TIMESTAMP_HEADER: "0" + ts}, {}),
        ("the legacy header too", {**headers, LEGACY_HEADER: f"t={ts},v1=00"}, {}),
        ("two webhook-id headers", [*headers.items(), (ID_HEADER, "msg_other")], {}),
        ("underscore header", [*headers.items(), ("webhook_id", wid)], {}),
        ("no webhook-id", {k: v for k, v in headers.items() if k != ID_HEADER}, {}),
    ]


def test_no_variant_of_a_captured_delivery_starts_another_run(client: FlaskClient) -> None:
    body = _body()
    captured = _delivery(body)
    assert _post(client, body, captured).status_code == 202
    for name, headers, extra in _variants(captured):
        response = _post(client, body, headers, **extra)
        assert response.status_code in (401, 409), (name, response.get_data(as_text=True))
        assert response.mimetype == "application/json", name
    for path in ("/api/v1/webhooks/demo-greeting", "/api/v1/webhooks/DEMO_GREETING"):
        response = _post(client, body, captured, url=path)  # the same secret's other spellings
        assert response.status_code in (404, 409), (path, response.get_data(as_text=True))
    replay = _post(client, body, captured)
    _error(replay, 409, "webhook_replayed")
    assert _webhook_runs() == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (TIMESTAMP_HEADER, "9" * 5000),
        (TIMESTAMP_HEADER, "99999999999999999999"),
        (TIMESTAMP_HEADER, "-1"),
        (TIMESTAMP_HEADER, "1e10"),
        (TIMESTAMP_HEADER, "nan"),
        (ID_HEADER, "x" * 5000),
        (SIGNATURE_HEADER, "v1," + "A" * 5000),
        (SIGNATURE_HEADER, "t=1,v1=abc"),
    ],
)
def test_malformed_headers_are_401_json_never_500(
    client: FlaskClient, name: str, value: str
) -> None:
    body = _body()
    response = _post(client, body, {**_delivery(body), name: value})
    assert name in _error(response, 401, "bad_signature")["message"]
    assert _webhook_runs() == 0


def test_bad_stale_and_tampered_deliveries_are_refused(client: FlaskClient) -> None:
    body = _body()
    unsigned = _error(_post(client, body, {}), 401, "bad_signature")
    assert "webhook-id" in unsigned["message"]  # names the scheme to use
    wrong = sign("whsec_" + "A" * 32, "msg_1", body)
    _error(_post(client, body, wrong), 401, "bad_signature")
    stale = _delivery(body, timestamp=int(time.time()) - 600)
    assert "window" in _error(_post(client, body, stale), 401, "bad_signature")["message"]
    tampered = _post(client, body.replace(b"hook", b"evil"), _delivery(body))
    _error(tampered, 401, "bad_signature")
    legacy = {LEGACY_HEADER: f"t={int(time.time())},v1=00"}
    assert (
        "no longer accepted" in _error(_post(client, body, legacy), 401, "bad_signature")["message"]
    )
    assert _webhook_runs() == 0


def test_invalid_inputs_are_400_and_unknown_webhooks_404(client: FlaskClient) -> None:
    body = json.dumps({"name": ""}).encode()
    bad = _post(client, body, _delivery(body))
    assert bad.status_code == 400 and "inputs.name" in bad.get_json()["error"]["fields"]
    other = _post(client, b"{}", _delivery(b"{}"), url="/api/v1/webhooks/example_fanout")
    _error(other, 404, "not_found")


def test_bad_signatures_spend_the_clients_failure_budget(settings: Settings, app: Flask) -> None:
    client = create_app(settings.replace(auth_failure_rate_limit=RateSpec(3, 60))).test_client()
    body = _body()
    forged = sign("whsec_" + "A" * 32, "msg_1", body)
    statuses = [_post(client, body, forged).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = _post(client, body, _delivery(body))  # even a good one waits: no oracle
    _error(refused, 429, "rate_limited")
    elsewhere = _post(client, body, _delivery(body), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.status_code == 202

"""Signed inbound webhooks start runs; bad, stale and replayed signatures are refused."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.signatures import HEADER, sign
from agent33.security.vault import Vault, keys_for, set_secret

pytestmark = pytest.mark.security
SECRET = "whsec_demo_greeting"
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


def _post(client: FlaskClient, body: bytes, header: str | None, **extra: str) -> Any:
    headers = {"Content-Type": "application/json", **extra}
    if header is not None:
        headers[HEADER] = header
    return client.post(URL, data=body, headers=headers)


@pytest.mark.usefixtures("configured")
def test_a_signed_event_starts_a_run_without_an_api_key(client: FlaskClient) -> None:
    body = json.dumps({"name": f"hook {uuid.uuid4().hex[:6]}"}).encode()
    now = int(time.time())
    response = _post(client, body, sign(SECRET, body, timestamp=now))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["workflow"] == "demo_greeting"
    again = _post(client, body, sign(SECRET, body, timestamp=now - 1))
    assert again.status_code == 202, "a new signature (new timestamp) is a new delivery"


@pytest.mark.usefixtures("configured")
def test_bad_stale_and_replayed_signatures(client: FlaskClient) -> None:
    body = json.dumps({"name": f"hook {uuid.uuid4().hex[:6]}"}).encode()  # a signature never seen
    assert _post(client, body, None).status_code == 401
    assert _post(client, body, sign("wrong", body)).status_code == 401
    stale = sign(SECRET, body, timestamp=int(time.time()) - 600)
    assert _post(client, body, stale).status_code == 401
    tampered = _post(client, body.replace(b"hook", b"evil"), sign(SECRET, body))  # same MAC
    assert tampered.status_code == 401
    header = sign(SECRET, body)
    assert _post(client, body, header).status_code == 202
    again = _post(client, body, header)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "webhook_replayed"


@pytest.mark.usefixtures("configured")
def test_webhook_id_makes_redelivery_idempotent(client: FlaskClient) -> None:
    body = json.dumps({"name": "hook"}).encode()
    first = _post(client, body, sign(SECRET, body), **{"Webhook-Id": "evt_1"})
    second = _post(client, body, sign(SECRET, body), **{"Webhook-Id": "evt_1"})
    assert first.status_code == 202 and second.status_code == 200
    assert first.get_json()["id"] == second.get_json()["id"] and second.get_json()["duplicate"]


@pytest.mark.usefixtures("configured")
def test_invalid_inputs_are_400_and_unknown_webhooks_404(client: FlaskClient) -> None:
    body = json.dumps({"name": ""}).encode()
    bad = _post(client, body, sign(SECRET, body))
    assert bad.status_code == 400 and "inputs.name" in bad.get_json()["error"]["fields"]
    other = client.post(
        "/api/v1/webhooks/example_fanout", data=b"{}", headers={HEADER: sign("x", b"{}")}
    )
    assert other.status_code == 404

"""WhatsApp end to end: the `hub.challenge` handshake, `X-Hub-Signature-256`-signed
notifications -> agent -> `/messages` reply on a fake Cloud API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from tests.integration.channels.conftest import add_channel, put_secrets
from tests.integration.channels.platforms import FakeWhatsApp
from tests.integration.channels.support import (
    inbound_count,
    model_calls,
    settle,
    whatsapp_headers,
    whatsapp_message,
)

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db", "celery_worker")]

TOKEN = "EAAG-test-access-token"
APP_SECRET = "test-app-secret"
VERIFY = "my-verify-token"
HOOK = "/api/v1/channels/whatsapp/shop"


@pytest.fixture
def whatsapp(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeWhatsApp]:
    put_secrets(
        own,
        {
            "CHANNEL_WHATSAPP_SHOP_TOKEN": TOKEN,
            "CHANNEL_WHATSAPP_SHOP_APP_SECRET": APP_SECRET,
            "CHANNEL_WHATSAPP_SHOP_VERIFY": VERIFY,
        },
    )
    with FakeWhatsApp(TOKEN) as fake:
        add_channel(
            api,
            admin,
            kind="whatsapp",
            name="shop",
            api_url=f"{fake.url}/v21.0",
            options={"phone_number_id": "106540352242922"},
        )
        yield fake


def test_the_verification_handshake(api: FlaskClient, whatsapp: FakeWhatsApp) -> None:
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY}
    ok = api.get(HOOK, query_string=query)
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = api.get(HOOK, query_string={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 401


def test_a_message_is_answered(api: FlaskClient, whatsapp: FakeWhatsApp, fake_ollama: Any) -> None:
    fake_ollama.script(content="Your order ships today.")
    body = whatsapp_message("wamid.TEST0001", "where is my order? ü")
    response = api.post(HOOK, data=body, headers=whatsapp_headers(APP_SECRET, body))
    assert response.status_code == 200
    (sent,) = whatsapp.wait_sent(1)
    assert sent["path"] == "/v21.0/106540352242922/messages"
    assert sent["to"] == "447700900123" and sent["text"]["body"] == "Your order ships today."
    assert sent["context"] == {"message_id": "wamid.TEST0001"}
    chats = [b for path, b in fake_ollama.requests if path == "/api/chat"]
    assert chats[-1]["messages"][-1]["content"] == "where is my order? ü"


def test_a_bad_signature_is_401(api: FlaskClient, whatsapp: FakeWhatsApp, fake_ollama: Any) -> None:
    body = whatsapp_message("wamid.TEST0002", "hi")
    forged = api.post(HOOK, data=body, headers=whatsapp_headers("wrong-secret", body))
    assert forged.status_code == 401
    settle(1.0)
    assert inbound_count() == 0 and model_calls(fake_ollama) == 0


def test_a_redelivered_message_runs_once(
    api: FlaskClient, whatsapp: FakeWhatsApp, fake_ollama: Any
) -> None:
    body = whatsapp_message("wamid.TEST0003", "once")
    headers = whatsapp_headers(APP_SECRET, body)
    assert api.post(HOOK, data=body, headers=headers).status_code == 200
    whatsapp.wait_sent(1)
    assert api.post(HOOK, data=body, headers=headers).status_code == 200
    settle()
    assert len(whatsapp.sent) == 1 and model_calls(fake_ollama) == 1


def test_a_status_update_is_acknowledged_and_ignored(
    api: FlaskClient, whatsapp: FakeWhatsApp
) -> None:
    body = (
        b'{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":'
        b'"messages","value":{"messaging_product":"whatsapp","statuses":[{"id":"wamid.X",'
        b'"status":"delivered","timestamp":"1760000000","recipient_id":"447700900123"}]}}]}]}'
    )
    assert api.post(HOOK, data=body, headers=whatsapp_headers(APP_SECRET, body)).status_code == 200
    assert inbound_count() == 0

"""Discord end to end: Ed25519-signed interactions -> PONG, or a deferred response and the
agent's answer as an edit of `@original` (and follow-ups) on a fake Discord API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient

from agent33.config import Settings
from tests.integration.channels.conftest import add_channel
from tests.integration.channels.platforms import FakeDiscord
from tests.integration.channels.support import (
    DISCORD_PUBLIC,
    discord_headers,
    discord_interaction,
    inbound_count,
    model_calls,
    settle,
)

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db", "celery_worker")]

HOOK = "/api/v1/channels/discord/guild"


@pytest.fixture
def discord(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        options = {"public_key": DISCORD_PUBLIC, "application_id": "1200000000000000001"}
        add_channel(
            api, admin, kind="discord", name="guild", api_url=f"{fake.url}/api/v10", options=options
        )
        yield fake


def test_ping_gets_pong(api: FlaskClient, discord: FakeDiscord) -> None:
    body = b'{"type":1}'
    response = api.post(HOOK, data=body, headers=discord_headers(body))
    assert response.status_code == 200 and response.get_json() == {"type": 1}
    assert response.headers["Content-Type"] == "application/json"


def test_a_command_is_deferred_then_answered(
    api: FlaskClient, discord: FakeDiscord, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Hi from the agent.")
    body = discord_interaction("1300000000000000001", "hello")
    response = api.post(HOOK, data=body, headers=discord_headers(body))
    assert response.status_code == 200 and response.get_json() == {"type": 5}
    (sent,) = discord.wait_sent(1)
    assert sent["original"] is True and sent["token"] == "aW50ZXJhY3Rpb24"
    assert sent["content"] == "Hi from the agent." and sent["allowed_mentions"] == {"parse": []}


def test_a_long_answer_edits_the_original_then_follows_up(
    api: FlaskClient, discord: FakeDiscord, fake_ollama: Any
) -> None:
    fake_ollama.script(content=("x" * 1999 + " ") * 2)
    body = discord_interaction("1300000000000000002", "long")
    assert api.post(HOOK, data=body, headers=discord_headers(body)).status_code == 200
    sent = discord.wait_sent(2)
    assert [s["original"] for s in sent] == [True, False]
    assert all(len(s["content"]) <= 2000 for s in sent)


def test_a_bad_signature_is_401(api: FlaskClient, discord: FakeDiscord, fake_ollama: Any) -> None:
    body = discord_interaction("1300000000000000003", "hello")
    other = Ed25519PrivateKey.generate()
    forged = api.post(HOOK, data=body, headers=discord_headers(body, key=other))
    tampered = api.post(HOOK, data=body + b" ", headers=discord_headers(body))
    assert forged.status_code == 401 and tampered.status_code == 401
    settle(1.0)
    assert inbound_count() == 0 and model_calls(fake_ollama) == 0


def test_a_replayed_interaction_runs_once(
    api: FlaskClient, discord: FakeDiscord, fake_ollama: Any
) -> None:
    body = discord_interaction("1300000000000000004", "once")
    headers = discord_headers(body)
    assert api.post(HOOK, data=body, headers=headers).status_code == 200
    discord.wait_sent(1)
    assert api.post(HOOK, data=body, headers=headers).status_code == 200
    settle()
    assert len(discord.sent) == 1 and model_calls(fake_ollama) == 1


def test_a_rate_limited_edit_is_retried(
    api: FlaskClient, discord: FakeDiscord, fake_ollama: Any
) -> None:
    discord.fail("429")
    body = discord_interaction("1300000000000000005", "hello")
    assert api.post(HOOK, data=body, headers=discord_headers(body)).status_code == 200
    (sent,) = discord.wait_sent(1)
    assert sent["original"] is True and len(discord.calls) == 2


def test_a_command_without_text_is_answered_without_the_agent(
    api: FlaskClient, discord: FakeDiscord, fake_ollama: Any
) -> None:
    from agent33.channels.receive import TEXT_ONLY

    body = discord_interaction("1300000000000000006", "")
    assert api.post(HOOK, data=body, headers=discord_headers(body)).status_code == 200
    (sent,) = discord.wait_sent(1)
    assert sent["original"] is True and sent["content"] == TEXT_ONLY
    assert model_calls(fake_ollama) == 0


def test_autocomplete_and_components_are_acknowledged(
    api: FlaskClient, discord: FakeDiscord
) -> None:
    for body, expected in ((b'{"type":4,"id":"1","token":"t"}', 8), (b'{"type":3,"id":"2"}', 6)):
        response = api.post(HOOK, data=body, headers=discord_headers(body))
        assert response.status_code == 200 and response.get_json()["type"] == expected

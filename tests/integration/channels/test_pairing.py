"""Pairing: an unpaired sender is refused and nothing runs; after `/pair <code>` the same
sender's messages run as the paired user; codes work once; allowlisted senders need none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from agent33.channels import pairing
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChannelIdentity, ChannelInbound
from tests.integration.channels.conftest import add_channel, put_secrets
from tests.integration.channels.platforms import FakeTelegram
from tests.integration.channels.support import model_calls, telegram_update
from tests.plugins.web import MakeUser

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db", "celery_worker")]

TOKEN = "123456:ABC-test-token"
SECRET = "pairing-secret"
HOOK = "/api/v1/channels/telegram/desk"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def telegram(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeTelegram]:
    put_secrets(
        own, {"CHANNEL_TELEGRAM_DESK_TOKEN": TOKEN, "CHANNEL_TELEGRAM_DESK_WEBHOOK": SECRET}
    )
    with FakeTelegram(TOKEN) as fake:
        add_channel(
            api,
            admin,
            kind="telegram",
            name="desk",
            api_url=fake.url,
            require_pairing=True,
            allowlist=["777"],
        )
        yield fake


def _say(api: FlaskClient, update_id: int, text: str, chat_id: int = 555000111) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    response = api.post(HOOK, data=telegram_update(update_id, text, chat_id), headers=headers)
    assert response.status_code == 200, response.get_json()


def _code(api: FlaskClient, admin: dict[str, str], user: str) -> str:
    response = api.post(f"{HOOK}/pairings", json={"user": user}, headers=admin)
    assert response.status_code == 201, response.get_json()
    code: str = response.get_json()["code"]
    return code


def test_unpaired_is_refused_then_pairing_runs_as_the_user(
    api: FlaskClient,
    admin: dict[str, str],
    telegram: FakeTelegram,
    fake_ollama: Any,
    make_user: MakeUser,
) -> None:
    _say(api, 1, "hello")
    (refusal,) = telegram.wait_sent(1)
    assert refusal["text"] == pairing.REFUSAL and model_calls(fake_ollama) == 0

    make_user("ada", PASSWORD, ["agents:read"])
    code = _code(api, admin, "ada")
    _say(api, 2, f"/pair {code}")
    assert telegram.wait_sent(2)[-1]["text"] == pairing.PAIRED.format(user="ada")
    assert model_calls(fake_ollama) == 0

    fake_ollama.script(content="Hello, paired Ada.")
    _say(api, 3, "hello again")
    assert telegram.wait_sent(3)[-1]["text"] == "Hello, paired Ada."
    with session_scope() as session:
        row = session.scalars(select(ChannelInbound).where(ChannelInbound.event_id == "3")).one()
        assert row.username == "ada"

    _say(api, 4, f"/pair {code}", chat_id=555000999)  # a code works once
    assert telegram.wait_sent(4)[-1]["text"] == pairing.BAD_CODE
    with session_scope() as session:
        senders = session.scalars(select(ChannelIdentity.sender)).all()
    assert senders == ["555000111"]


def test_a_paired_user_without_chat_scope_is_refused(
    api: FlaskClient,
    admin: dict[str, str],
    telegram: FakeTelegram,
    fake_ollama: Any,
    make_user: MakeUser,
) -> None:
    make_user("bob", PASSWORD, ["runs:read"])
    _say(api, 10, f"/pair {_code(api, admin, 'bob')}")
    telegram.wait_sent(1)
    _say(api, 11, "hello")
    assert telegram.wait_sent(2)[-1]["text"] == pairing.REFUSAL
    assert model_calls(fake_ollama) == 0


def test_an_allowlisted_sender_needs_no_pairing(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Welcome.")
    _say(api, 20, "hi", chat_id=777)
    assert telegram.wait_sent(1)[-1]["text"] == "Welcome."


def test_pairing_an_unknown_user_is_404(
    api: FlaskClient, admin: dict[str, str], telegram: FakeTelegram
) -> None:
    response = api.post(f"{HOOK}/pairings", json={"user": "nobody"}, headers=admin)
    assert response.status_code == 404 and "user" in response.get_json()["error"]["fields"]

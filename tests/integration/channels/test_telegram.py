"""Telegram end to end: a signed update -> webhook -> agent on the real worker (fake model
server) -> `sendMessage` on a fake Bot API; bad secrets, replays, retries and dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChannelOutbound, DeadLetter
from tests.integration.channels.conftest import add_channel, put_secrets
from tests.integration.channels.platforms import FakeTelegram
from tests.integration.channels.support import inbound_count, model_calls, settle, telegram_update

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db", "celery_worker")]

TOKEN = "123456:ABC-test-token"
SECRET = "s3cret_token-1"
HOOK = "/api/v1/channels/telegram/bot"


@pytest.fixture
def telegram(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeTelegram]:
    put_secrets(own, {"CHANNEL_TELEGRAM_BOT_TOKEN": TOKEN, "CHANNEL_TELEGRAM_BOT_WEBHOOK": SECRET})
    with FakeTelegram(TOKEN) as fake:
        add_channel(api, admin, kind="telegram", name="bot", api_url=fake.url)
        yield fake


def _post(api: FlaskClient, body: bytes, secret: str | None = SECRET) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return api.post(HOOK, data=body, headers=headers)


def test_a_message_reaches_the_agent_and_the_answer_is_sent(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Hello Ada, how can I help?")
    response = _post(api, telegram_update(815000123, "hello bot"))
    assert response.status_code == 200, response.get_json()
    (sent,) = telegram.wait_sent(1)
    assert sent["chat_id"] == 555000111
    assert sent["text"] == "Hello Ada, how can I help?"
    assert sent["reply_parameters"]["message_id"] == 42
    chats = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert chats[-1]["messages"][-1] == {"role": "user", "content": "hello bot"}


def test_the_conversation_is_one_chat_session(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Noted, Ada.")
    assert _post(api, telegram_update(1, "I am Ada")).status_code == 200
    telegram.wait_sent(1)
    fake_ollama.script(content="You are Ada.")
    assert _post(api, telegram_update(2, "Who am I?")).status_code == 200
    telegram.wait_sent(2)
    chats = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    sent = [(m["role"], m["content"]) for m in chats[-1]["messages"][1:]]
    assert sent == [("user", "I am Ada"), ("assistant", "Noted, Ada."), ("user", "Who am I?")]


def test_a_bad_or_missing_secret_is_401_and_runs_nothing(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    wrong = _post(api, telegram_update(7, "hi"), secret="not-the-secret")
    missing = _post(api, telegram_update(8, "hi"), secret=None)
    assert wrong.status_code == 401 and missing.status_code == 401
    assert "X-Telegram-Bot-Api-Secret-Token" in wrong.get_json()["error"]["fields"]
    settle(1.0)
    assert inbound_count() == 0 and model_calls(fake_ollama) == 0 and telegram.sent == []


def test_a_replayed_update_runs_nothing_twice(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    body = telegram_update(900, "once please")
    assert _post(api, body).status_code == 200
    telegram.wait_sent(1)
    assert _post(api, body).status_code == 200
    settle()
    assert len(telegram.sent) == 1 and model_calls(fake_ollama) == 1


def test_an_unknown_channel_is_404(api: FlaskClient, telegram: FakeTelegram) -> None:
    assert api.post("/api/v1/channels/telegram/nobody", data=b"{}").status_code == 404
    assert api.post("/api/v1/channels/icq/bot", data=b"{}").status_code == 404


def test_a_long_answer_is_split_at_4096(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    long = ("word " * 2000).strip()  # 9,999 characters
    fake_ollama.script(content=long)
    assert _post(api, telegram_update(31, "talk a lot")).status_code == 200
    sent = telegram.wait_sent(3)
    assert [len(s["text"]) <= 4096 for s in sent] == [True, True, True]
    assert " ".join(s["text"] for s in sent) == long
    assert "reply_parameters" in sent[0] and "reply_parameters" not in sent[1]
    gaps = [
        later - earlier for earlier, later in zip(telegram.times, telegram.times[1:], strict=False)
    ]
    assert min(gaps) >= 0.9  # about one message a second per chat


def test_a_rate_limit_is_retried_after_its_hint(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    telegram.fail("429")
    fake_ollama.script(content="Eventually.")
    assert _post(api, telegram_update(41, "hi")).status_code == 200
    (sent,) = telegram.wait_sent(1)
    assert sent["text"] == "Eventually."
    with session_scope() as session:
        out = session.scalars(select(ChannelOutbound)).one()
        assert out.state == "sent" and out.attempts == 1
        assert "Too Many Requests" in (out.last_error or "")


def test_an_api_error_is_retried_then_dead_lettered(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    telegram.fail("500", times=3)
    assert _post(api, telegram_update(51, "hi")).status_code == 200
    letter = _wait_dead_letter()
    assert letter.kind == "channel" and letter.attempts == 3
    assert "HTTP 500" in (letter.last_error or "")
    assert telegram.sent == [] and len(telegram.calls) == 3


def _wait_dead_letter(timeout: float = 30.0) -> DeadLetter:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            letter = session.scalars(select(DeadLetter)).first()
            if letter is not None:
                session.expunge(letter)
                return letter
        time.sleep(0.1)
    raise AssertionError("no dead letter")


def test_a_dead_lettered_answer_can_be_replayed(
    api: FlaskClient, admin: dict[str, str], telegram: FakeTelegram, fake_ollama: Any
) -> None:
    telegram.fail("refuse")
    fake_ollama.script(content="Second time lucky.")
    assert _post(api, telegram_update(61, "hi")).status_code == 200
    letter = _wait_dead_letter()
    assert letter.attempts == 1 and "chat not found" in (letter.last_error or "")
    replayed = api.post(f"/api/v1/deadletters/{letter.id}/replay", headers=admin)
    assert replayed.status_code == 202, replayed.get_json()
    assert replayed.get_json()["kind"] == "channel"
    (sent,) = telegram.wait_sent(1)
    assert sent["text"] == "Second time lucky." and model_calls(fake_ollama) == 1


def test_an_answer_whose_send_message_was_lost_is_sent_by_the_notify_tick(
    telegram: FakeTelegram,
) -> None:
    import datetime as dt

    from agent33.channels import store
    from agent33.db.base import utcnow
    from agent33.db.models import Channel, ChannelInbound
    from tasks.channels import notify_runs

    with session_scope() as session:  # committed, but its `agent33.channel.send` never went out
        channel = session.scalars(select(Channel)).one()
        inbound = ChannelInbound(
            channel_id=channel.id,
            event_id="lost-1",
            sender="555000111",
            conversation="555000111",
            text="hi",
            extra={},
            state="answered",
        )
        session.add(inbound)
        session.flush()
        out = store.queue_answer(session=session, channel=channel, inbound=inbound, text="Late.")
        out.next_attempt_at = utcnow() - dt.timedelta(minutes=5)
    assert notify_runs()["republished"] == 1
    (sent,) = telegram.wait_sent(1)
    assert sent["text"] == "Late."


def test_a_channel_whose_secret_is_missing_refuses_without_naming_it(
    api: FlaskClient, admin: dict[str, str]
) -> None:
    add_channel(api, admin, kind="telegram", name="fresh")
    response = api.post(
        "/api/v1/channels/telegram/fresh",
        data=telegram_update(1, "hi"),
        headers={"X-Telegram-Bot-Api-Secret-Token": "guess"},
    )
    assert response.status_code == 401
    assert "CHANNEL_TELEGRAM_FRESH" not in response.get_data(as_text=True)


def test_lost_and_dead_turns_are_recovered_by_the_notify_tick(
    telegram: FakeTelegram, fake_ollama: Any
) -> None:
    import datetime as dt

    from agent33.channels import replies
    from agent33.db.base import utcnow
    from agent33.db.models import Channel, ChannelInbound
    from tasks.channels import notify_runs

    fake_ollama.script(content="Better late.")
    long_ago = utcnow() - dt.timedelta(minutes=20)
    with session_scope() as session:
        channel = session.scalars(select(Channel)).one()
        for event_id, state, chat in (("lost", "received", 1), ("died", "answering", 2)):
            session.add(
                ChannelInbound(
                    channel_id=channel.id,
                    event_id=event_id,
                    sender=str(chat),
                    conversation=str(chat),
                    text="hello?",
                    extra={},
                    state=state,
                    created_at=long_ago,
                )
            )
    result = notify_runs()
    assert (result["unanswered"], result["stalled"]) == (1, 1)
    sent = {s["chat_id"]: s["text"] for s in telegram.wait_sent(2)}
    assert sent == {1: "Better late.", 2: replies.STALLED}
    assert notify_runs()["unanswered"] == 0 and model_calls(fake_ollama) == 1


def test_a_failing_model_gets_a_short_apology_without_details(
    api: FlaskClient, telegram: FakeTelegram, fake_ollama: Any
) -> None:
    from agent33.channels.replies import FAILED

    fake_ollama.mode = "500"
    assert _post(api, telegram_update(71, "hi")).status_code == 200
    (sent,) = telegram.wait_sent(1)
    assert sent["text"] == FAILED and "127.0.0.1" not in sent["text"]

"""Slack end to end: signed Events API callbacks -> agent -> `chat.postMessage` in the thread
on a fake Web API; url_verification, bad and stale signatures, retries by event id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from tests.integration.channels.conftest import add_channel, put_secrets
from tests.integration.channels.platforms import FakeSlack
from tests.integration.channels.support import (
    inbound_count,
    model_calls,
    settle,
    slack_event,
    slack_headers,
)

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db", "celery_worker")]

TOKEN = "xoxb-test-token"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
HOOK = "/api/v1/channels/slack/team"


@pytest.fixture
def slack(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeSlack]:
    put_secrets(own, {"CHANNEL_SLACK_TEAM_TOKEN": TOKEN, "CHANNEL_SLACK_TEAM_SIGNING": SIGNING})
    with FakeSlack(TOKEN) as fake:
        add_channel(api, admin, kind="slack", name="team", api_url=f"{fake.url}/api")
        yield fake


def test_url_verification_echoes_the_challenge(api: FlaskClient, slack: FakeSlack) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = b'{"token":"t","challenge":"%s","type":"url_verification"}' % challenge.encode()
    response = api.post(HOOK, data=body, headers=slack_headers(SIGNING, body))
    assert response.status_code == 200
    assert response.get_json() == {"challenge": challenge}


def test_a_mention_is_answered_in_its_thread(
    api: FlaskClient, slack: FakeSlack, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Here is the summary.")
    body = slack_event("Ev0ABCDEF1", "summarise this thread")
    response = api.post(HOOK, data=body, headers=slack_headers(SIGNING, body))
    assert response.status_code == 200
    (sent,) = slack.wait_sent(1)
    assert sent == {
        "channel": "C0CHAN",
        "text": "Here is the summary.",
        "thread_ts": "1760000000.000100",
    }
    chats = [b for path, b in fake_ollama.requests if path == "/api/chat"]
    assert chats[-1]["messages"][-1]["content"] == "summarise this thread"  # mention stripped


def test_bad_and_stale_signatures_are_401(
    api: FlaskClient, slack: FakeSlack, fake_ollama: Any
) -> None:
    body = slack_event("Ev1", "hi")
    wrong = api.post(HOOK, data=body, headers=slack_headers("not-the-secret", body))
    stale = api.post(HOOK, data=body, headers=slack_headers(SIGNING, body, int(time.time()) - 301))
    unsigned = api.post(HOOK, data=body, headers={"Content-Type": "application/json"})
    assert [wrong.status_code, stale.status_code, unsigned.status_code] == [401, 401, 401]
    settle(1.0)
    assert inbound_count() == 0 and model_calls(fake_ollama) == 0 and slack.sent == []


def test_a_retry_and_a_second_event_for_the_same_message_run_once(
    api: FlaskClient, slack: FakeSlack, fake_ollama: Any
) -> None:
    body = slack_event("Ev2", "once")
    assert api.post(HOOK, data=body, headers=slack_headers(SIGNING, body)).status_code == 200
    slack.wait_sent(1)
    retry = {**slack_headers(SIGNING, body), "X-Slack-Retry-Num": "1"}
    retry["X-Slack-Retry-Reason"] = "http_timeout"
    assert api.post(HOOK, data=body, headers=retry).status_code == 200
    also = slack_event("Ev3", "once", kind="message")  # the same message, new event id
    assert api.post(HOOK, data=also, headers=slack_headers(SIGNING, also)).status_code == 200
    settle()
    assert len(slack.sent) == 1 and model_calls(fake_ollama) == 1


def test_a_refused_post_is_dead_lettered_at_once(
    api: FlaskClient, slack: FakeSlack, fake_ollama: Any
) -> None:
    from tests.integration.channels.test_telegram import _wait_dead_letter

    slack.fail("refuse")
    body = slack_event("Ev4", "hi", ts="1760000000.000400")
    assert api.post(HOOK, data=body, headers=slack_headers(SIGNING, body)).status_code == 200
    letter = _wait_dead_letter()
    assert letter.attempts == 1 and "channel_not_found" in (letter.last_error or "")


def test_channel_chatter_without_a_mention_and_bot_posts_are_ignored(
    api: FlaskClient, slack: FakeSlack
) -> None:
    chatter = json.loads(slack_event("Ev5", "lunch?", ts="1760000000.000500", kind="message"))
    chatter["event"]["channel_type"] = "channel"
    ours = json.loads(slack_event("Ev6", "an answer", ts="1760000000.000600"))
    ours["event"]["bot_id"] = "B0BOT"
    for payload in (chatter, ours):
        body = json.dumps(payload).encode()
        assert api.post(HOOK, data=body, headers=slack_headers(SIGNING, body)).status_code == 200
    assert inbound_count() == 0


def test_a_direct_message_is_answered(api: FlaskClient, slack: FakeSlack, fake_ollama: Any) -> None:
    fake_ollama.script(content="Hi in private.")
    body = slack_event("Ev7", "hello", ts="1760000000.000700", kind="message")
    assert api.post(HOOK, data=body, headers=slack_headers(SIGNING, body)).status_code == 200
    assert slack.wait_sent(1)[0]["text"] == "Hi in private."

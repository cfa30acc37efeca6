"""A channel that starts a workflow: the message starts a run, the event bus tells the
conversation when the run waits for an approval, `/approve` from the chat answers it as the
paired user, and the run's outputs come back to the conversation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from agent33.channels import notify
from agent33.channels import runs as channel_runs
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChannelInbound, Run
from tasks.channels import notify_runs
from tests.integration.channels.conftest import put_secrets
from tests.integration.channels.platforms import FakeTelegram
from tests.integration.channels.support import telegram_update
from tests.plugins.web import MakeUser

pytestmark = [
    pytest.mark.messaging,
    pytest.mark.usefixtures("committed_db", "celery_worker", "stored_workflows"),
]

TOKEN = "123456:ABC-test-token"
SECRET = "runs-secret"
HOOK = "/api/v1/channels/telegram/ops"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def telegram(own: Settings, api: FlaskClient, admin: dict[str, str]) -> Iterator[FakeTelegram]:
    put_secrets(own, {"CHANNEL_TELEGRAM_OPS_TOKEN": TOKEN, "CHANNEL_TELEGRAM_OPS_WEBHOOK": SECRET})
    notify.drain("test")  # the group exists (and holds nothing older) before the run starts
    with FakeTelegram(TOKEN) as fake:
        response = api.post(
            "/api/v1/channels",
            json={
                "kind": "telegram",
                "name": "ops",
                "workflow": "example_approval",
                "api_url": fake.url,
                "require_pairing": True,
            },
            headers=admin,
        )
        assert response.status_code == 201, response.get_json()
        yield fake


def _say(api: FlaskClient, update_id: int, text: str) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    response = api.post(HOOK, data=telegram_update(update_id, text), headers=headers)
    assert response.status_code == 200, response.get_json()


def _notified(fake: FakeTelegram, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Drain the bus (as beat's `agent33.channel.notify` would) until `count` messages went."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notify_runs()
        if len(fake.sent) >= count:
            return list(fake.sent)
        time.sleep(0.2)
    raise AssertionError(f"{len(fake.sent)} messages of {count}: {fake.sent}")


def _pair(api: FlaskClient, admin: dict[str, str], fake: FakeTelegram, user: str) -> None:
    code = api.post(f"{HOOK}/pairings", json={"user": user}, headers=admin).get_json()["code"]
    _say(api, 1, f"/pair {code}")
    fake.wait_sent(1)


def test_a_run_waits_is_approved_from_the_chat_and_reports_back(
    api: FlaskClient, admin: dict[str, str], telegram: FakeTelegram, make_user: MakeUser
) -> None:
    make_user("ada", PASSWORD, ["agents:read", "runs:write"])
    _pair(api, admin, telegram, "ada")

    _say(api, 2, "ship it")
    waiting = _notified(telegram, 2)[-1]["text"]
    assert "waits for approval of step gate" in waiting and "/approve" in waiting
    with session_scope() as session:
        row = session.scalars(select(ChannelInbound).where(ChannelInbound.event_id == "2")).one()
        run = session.get(Run, row.run_id)
        assert run is not None and run.created_by == "ada" and run.state == "waiting"

    _say(api, 3, "/approve looks good")
    approved = telegram.wait_sent(3)[-1]["text"]
    assert approved.startswith("Approved step gate")
    done = _notified(telegram, 4)[-1]["text"]
    assert '"approved_by": "ada"' in done and '"published": "v1.0"' in done


def test_only_a_user_who_may_run_workflows_approves(
    api: FlaskClient, admin: dict[str, str], telegram: FakeTelegram, make_user: MakeUser
) -> None:
    make_user("eve", PASSWORD, ["agents:read"])
    _pair(api, admin, telegram, "eve")
    _say(api, 2, "/approve")
    assert telegram.wait_sent(2)[-1]["text"] == channel_runs.NOT_ALLOWED
    _say(api, 3, "ship it")
    assert telegram.wait_sent(3)[-1]["text"] == channel_runs.NO_RUNS
    with session_scope() as session:
        assert session.scalars(select(Run)).all() == []

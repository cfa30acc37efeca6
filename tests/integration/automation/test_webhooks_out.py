"""Outbound webhooks through the real API, broker and io worker, to a real local receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import standardwebhooks
from flask.testing import FlaskClient
from sqlalchemy import event, select

from agent33 import db
from agent33.automation import webhooks_out
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import WebhookDelivery
from agent33.engine import lifecycle, outbox, service
from tasks.app import settings_swapped
from tasks.dispatch import flush_outbox
from tests.integration.automation.receiver import Script, receiver, verify
from tests.integration.engine.helpers import save, start, wait_for

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db", "celery_worker")]

OK_FLOW = {
    "name": "hooked_ok",
    "inputs": {"type": "object"},
    "steps": [{"id": "a", "action": "transform", "with": {"value": "{{ 1 + 1 }}"}}],
}
FAILING_FLOW = {
    "name": "hooked_fail",
    "inputs": {"type": "object"},
    "steps": [{"id": "boom", "action": "transform", "with": {"value": "{{ 1 // 0 }}"}}],
}


@pytest.fixture
def fast_retries(settings: Settings) -> Iterator[Settings]:
    with settings_swapped(settings.replace(webhook_retry_base=0.05, webhook_max_attempts=8)) as own:
        yield own


def subscribe(client: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhook-subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def test_a_receiver_failing_five_times_gets_it_once_signed_with_one_id(
    client: FlaskClient, admin_headers: dict[str, str], fast_retries: Settings
) -> None:
    script = Script(fail_first=5)
    with receiver(script) as url:
        hook = subscribe(client, admin_headers, url=url, events=["run.succeeded"])
        assert hook["secret"].startswith("whsec_")
        run_id = wait_for(start(OK_FLOW)).id
        [ok] = script.wait_ok()
    assert [r.status for r in script.seen] == [500] * 5 + [200]
    assert len({r.headers["webhook-id"] for r in script.seen}) == 1
    for received in script.seen:
        verify(hook["secret"], received)
    body = json.loads(ok.body)
    assert standardwebhooks.Webhook(hook["secret"]).verify(ok.body, ok.headers) == body
    assert body["type"] == "run.succeeded" and body["data"]["run_id"] == str(run_id)
    assert body["data"]["state"] == "succeeded" and body["timestamp"].endswith("Z")
    with session_scope() as session:
        [row] = session.scalars(select(WebhookDelivery))
        assert (row.state, row.attempts, row.last_status) == ("delivered", 6, 200)
        assert row.msg_id == ok.headers["webhook-id"]
    listed = client.get(f"/api/v1/webhook-subscriptions/{hook['id']}", headers=admin_headers)
    assert "secret" not in listed.get_json()


def test_a_later_event_of_a_run_waits_for_the_earlier_one(
    client: FlaskClient, admin_headers: dict[str, str], fast_retries: Settings
) -> None:
    script = Script(fail_first=2)
    with receiver(script) as url:
        subscribe(client, admin_headers, url=url, events=["step.failed", "run.failed"])
        run = wait_for(start(FAILING_FLOW))
        assert run.state == "failed"
        script.wait_ok(2)
    types = [json.loads(r.body)["type"] for r in script.seen]
    assert types == ["step.failed"] * 3 + ["run.failed"], types


def test_a_workflow_filter_and_event_types_select_what_is_sent(
    client: FlaskClient, admin_headers: dict[str, str], fast_retries: Settings
) -> None:
    script = Script()
    with receiver(script) as url:
        subscribe(client, admin_headers, url=url, events=["run.succeeded"], workflow="other")
        subscribe(client, admin_headers, url=url, events=["run.failed"])
        wait_for(start(OK_FLOW))
        wait_for(start(FAILING_FLOW))
        script.wait_ok(1)
    assert [json.loads(r.body)["type"] for r in script.seen] == ["run.failed"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://example.org/hook", "events": ["run.failed"]}, "url"),
        ({"url": "ftp://127.0.0.1/hook", "events": ["run.failed"]}, "url"),
        ({"url": "http://127.0.0.1:9/hook", "events": ["run.exploded"]}, "events"),
        ({"url": "http://127.0.0.1:9/hook", "events": []}, "events"),
    ],
)
def test_bad_subscriptions_are_a_400_naming_the_field(
    client: FlaskClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/webhook-subscriptions", json=body, headers=admin_headers)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_subscriptions_need_their_scopes(
    client: FlaskClient, make_api_key: Any, admin_headers: dict[str, str]
) -> None:
    reader = make_api_key(["webhooks:read"])
    body = {"url": "http://127.0.0.1:9/hook", "events": ["run.failed"]}
    refused = client.post("/api/v1/webhook-subscriptions", json=body, headers=reader)
    assert refused.status_code == 403
    created = subscribe(client, admin_headers, **body)
    listing = client.get("/api/v1/webhook-subscriptions", headers=reader).get_json()
    assert [h["id"] for h in listing["items"]] == [created["id"]]
    gone = client.delete(f"/api/v1/webhook-subscriptions/{created['id']}", headers=admin_headers)
    assert gone.status_code == 204
    assert client.get("/api/v1/webhook-subscriptions", headers=reader).get_json()["total"] == 0


def test_without_subscriptions_steps_pay_no_query(settings: Settings) -> None:
    """Only a run's end looks for subscriptions, and a per-process cache answers the second run."""
    chain = {
        "name": "hookless_chain",
        "inputs": {"type": "object"},
        "steps": [
            {"id": f"s{i}", "action": "transform", "with": {"value": i}}
            | ({"depends_on": [f"s{i - 1}"]} if i else {})
            for i in range(6)
        ],
    }
    webhooks_out.invalidate_cache()
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "webhooks" in statement:
            seen.append(statement)

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(2):
            assert wait_for(start(chain)).state == "succeeded"
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(seen) == 1, seen  # one EXISTS for two runs of six steps


def test_a_delivery_whose_publish_was_lost_is_sent_by_the_relay(
    client: FlaskClient, admin_headers: dict[str, str], fast_retries: Settings
) -> None:
    """The process dies between the commit and the publish: the outbox row is still there."""
    script = Script()
    with receiver(script) as url:
        subscribe(client, admin_headers, url=url, events=["run.cancelled"])
        save(OK_FLOW)
        with session_scope() as session:
            run, _, _ = service.start_run(
                session=session, settings=fast_retries, workflow_name=OK_FLOW["name"], inputs={}
            )
            lifecycle.cancel_run(session=session, run_id=run.id)
            session.info.pop(webhooks_out.AFTER_COMMIT)  # never published after this commit
        time.sleep(0.5)
        assert script.seen == []
        flush_outbox(outbox.stale_ids(older_than=0))  # what beat's relay_outbox does
        [ok] = script.wait_ok()
    assert json.loads(ok.body)["data"]["run_id"] == str(run.id)


def test_a_redirect_is_a_failed_attempt_never_followed(
    client: FlaskClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    script = Script(broken=True, status=307)
    two_attempts = settings.replace(webhook_retry_base=0.05, webhook_max_attempts=2)
    with settings_swapped(two_attempts), receiver(script) as url:
        subscribe(client, admin_headers, url=url, events=["run.succeeded"])
        wait_for(start(OK_FLOW))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _states() != ["dead"]:
            time.sleep(0.05)
    assert _states() == ["dead"]
    assert [(r.path, r.status) for r in script.seen] == [("/hook", 307)] * 2


def _states() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(WebhookDelivery.state)))


def test_410_gone_deactivates_the_subscription_at_once(
    client: FlaskClient, admin_headers: dict[str, str], fast_retries: Settings
) -> None:
    script = Script(broken=True, status=410)
    with receiver(script) as url:
        hook = subscribe(client, admin_headers, url=url, events=["run.succeeded"])
        wait_for(start(OK_FLOW))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _states() != ["dead"]:
            time.sleep(0.05)
    assert _states() == ["dead"] and [r.status for r in script.seen] == [410]
    got = client.get(f"/api/v1/webhook-subscriptions/{hook['id']}", headers=admin_headers)
    assert got.get_json()["active"] is False

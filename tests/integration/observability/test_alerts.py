"""Alert rules evaluated by the beat task against real runs, dead letters and broker queues:
one incident and one webhook delivery per firing however often beat ticks, then resolved."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from agent33.automation import dead_letters
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import AlertIncident, WebhookDelivery
from agent33.errors import DefinitionError
from agent33.observability import alerts
from agent33.observability.alert_rules import load_rules, parse_rule
from tasks.app import settings_swapped
from tasks.maintenance import evaluate_alerts
from tests.integration.automation.receiver import Script, receiver, verify
from tests.integration.engine.helpers import start, wait_for
from web import create_app

pytestmark = [
    pytest.mark.observability,
    pytest.mark.usefixtures("committed_db", "celery_worker"),
]

FLAKY = {
    "name": "flaky",
    "inputs": {"type": "object", "properties": {"d": {"type": "integer"}}},
    "steps": [{"id": "divide", "action": "transform", "with": {"value": "{{ 1 // inputs.d }}"}}],
}
FAILURE_RULE = """\
kind: failure_rate
description: More than half of the flaky runs failed
workflow: flaky
threshold: 0.5
window: 600
min_count: 2
"""


@pytest.fixture
def rules_dir(tmp_path: Path, settings: Settings) -> Iterator[Settings]:
    """Settings whose definitions directory holds only this test's alert rules."""
    (tmp_path / "alerts").mkdir()
    with settings_swapped(settings.replace(definitions_dir=tmp_path)) as own:
        yield own


def write_rule(settings: Settings, name: str, text: str) -> None:
    (settings.definitions_dir / "alerts" / f"{name}.yaml").write_text(text)


def incidents(rule: str) -> list[AlertIncident]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AlertIncident).where(AlertIncident.rule == rule).order_by(AlertIncident.id)
            )
        )


def subscribe(client: FlaskClient, headers: dict[str, str], url: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/webhook-subscriptions",
        json={"url": url, "events": ["alert.firing", "alert.resolved"]},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def counted(rule: str, event: str) -> float:
    value = REGISTRY.get_sample_value("agent33_alerts_total", {"rule": rule, "event": event})
    return value or 0.0


@pytest.fixture
def alerts_api(rules_dir: Settings) -> FlaskClient:
    """The API created with the test's rules directory."""
    return create_app(rules_dir).test_client()


def run_flaky(d: int) -> str:
    run = wait_for(start(FLAKY, {"d": d}))
    return run.state


def test_a_failing_workflow_fires_once_then_resolves_after_recovery(
    client: FlaskClient,
    alerts_api: FlaskClient,
    admin_headers: dict[str, str],
    rules_dir: Settings,
) -> None:
    write_rule(rules_dir, "flaky_failing", FAILURE_RULE)
    fired_before = counted("flaky_failing", "firing")
    script = Script()
    with receiver(script) as url:
        hook = subscribe(client, admin_headers, url)
        assert [run_flaky(0), run_flaky(0)] == ["failed", "failed"]
        for _ in range(3):
            result = evaluate_alerts()
            assert result["failed"] == []
        [firing] = script.wait_ok(1)
        time.sleep(1.0)  # a second delivery, if any, would have arrived by now
        assert len(script.seen) == 1
        [incident] = incidents("flaky_failing")
        assert incident.resolved_at is None and incident.value == 1.0
        body = json.loads(firing.body)
        verify(hook["secret"], firing)
        assert body["type"] == "alert.firing"
        assert body["data"]["rule"] == "flaky_failing" and body["data"]["state"] == "firing"
        assert body["data"]["incident_id"] == incident.id and body["data"]["threshold"] == 0.5
        assert "2 of 2 runs failed" in body["data"]["message"]
        assert counted("flaky_failing", "firing") == fired_before + 1

        listed = alerts_api.get("/api/v1/alerts", headers=admin_headers).get_json()["items"]
        [rule] = [r for r in listed if r["name"] == "flaky_failing"]
        assert rule["state"] == "firing" and rule["value"] == 1.0
        assert rule["last_incident"]["incident_id"] == incident.id

        assert [run_flaky(1) for _ in range(3)] == ["succeeded"] * 3  # 2 of 5 failed: 40 %
        evaluate_alerts()
        evaluate_alerts()
        script.wait_ok(2)
        time.sleep(1.0)
    assert [json.loads(r.body)["type"] for r in script.seen] == ["alert.firing", "alert.resolved"]
    resolved = json.loads(script.seen[1].body)["data"]
    assert resolved["incident_id"] == incident.id and resolved["resolved_value"] == 0.4
    [closed] = incidents("flaky_failing")
    assert closed.resolved_at is not None
    with session_scope() as session:
        states = [d.state for d in session.scalars(select(WebhookDelivery))]
    assert states == ["delivered", "delivered"]
    listed = alerts_api.get("/api/v1/alerts", headers=admin_headers).get_json()["items"]
    assert listed[0]["state"] == "ok" and listed[0]["last_incident"]["state"] == "resolved"


def test_any_dead_letter_fires_until_it_is_replayed(rules_dir: Settings) -> None:
    write_rule(rules_dir, "dead", "kind: dead_letters\n")
    assert alerts.tick(rules_dir).fired == []
    with session_scope() as session:
        letter = dead_letters.record(
            session=session, kind="step", ref="x", payload={}, attempts=3, last_error="lost"
        )
        session.flush()
        letter_id = letter.id
    first = alerts.tick(rules_dir)
    again = alerts.tick(rules_dir)
    assert (first.fired, again.fired, again.resolved) == (["dead"], [], [])
    [incident] = incidents("dead")
    assert incident.value == 1.0 and incident.details["by_kind"] == {"step": 1}
    with session_scope() as session:
        dead_letters.mark_replayed(dead_letters.get(session=session, letter_id=letter_id))
    assert alerts.tick(rules_dir).resolved == ["dead"]
    assert incidents("dead")[0].resolved_at is not None


def test_a_deep_queue_fires_only_after_it_stayed_deep_for_the_rule_s_time(
    rules_dir: Settings,
) -> None:
    write_rule(
        rules_dir, "gpu_backlog", "kind: queue_depth\nqueue: llm.gpu\nthreshold: 3\nfor: 60\n"
    )
    broker = redis.Redis.from_url(rules_dir.redis_url or "")
    now = utcnow()
    try:
        broker.lpush("llm.gpu", *[b"{}"] * 5)  # unprefixed: the test worker never takes these
        assert alerts.tick(rules_dir, now=now).fired == []
        with session_scope() as session:
            [state] = alerts.listing(session=session, settings=rules_dir)
        assert (state["state"], state["value"]) == ("pending", 5.0)
        later = alerts.tick(rules_dir, now=now + dt.timedelta(seconds=61))
        assert later.fired == ["gpu_backlog"]
        broker.delete("llm.gpu")
        cleared = alerts.tick(rules_dir, now=now + dt.timedelta(seconds=90))
        assert cleared.resolved == ["gpu_backlog"]
    finally:
        broker.delete("llm.gpu")
        broker.close()


def test_step_latency_p95_over_the_window(rules_dir: Settings) -> None:
    write_rule(
        rules_dir,
        "slow_steps",
        "kind: step_latency\nworkflow: flaky\nthreshold: 0.000001\nwindow: 600\n",
    )
    assert run_flaky(1) == "succeeded"
    assert alerts.tick(rules_dir).fired == ["slow_steps"]
    [incident] = incidents("slow_steps")
    assert incident.value > 0 and incident.details["steps"] == 1


def test_rules_from_the_setting_and_bad_rules_name_the_field(
    alerts_api: FlaskClient, admin_headers: dict[str, str], rules_dir: Settings
) -> None:
    with_env = rules_dir.replace(alert_rules={"any_dead": {"kind": "dead_letters"}})
    assert [r.name for r in load_rules(with_env)] == ["any_dead"]
    with pytest.raises(DefinitionError) as raised:
        parse_rule({"name": "x", "kind": "queue_depth", "threshold": 1}, "here")
    assert "queue" in raised.value.fields
    with pytest.raises(DefinitionError) as raised:
        parse_rule({"name": "x", "kind": "dead_letters", "queue": "steps"}, "here")
    assert raised.value.fields["queue"] == ["not a field of a dead_letters rule"]
    write_rule(rules_dir, "broken", "kind: failure_rate\nthreshold: 2\n")
    response = alerts_api.get("/api/v1/alerts", headers=admin_headers)
    assert response.status_code == 400
    assert "threshold" in response.get_json()["error"]["fields"]
    assert alerts.tick(rules_dir).failed == ["rules"]

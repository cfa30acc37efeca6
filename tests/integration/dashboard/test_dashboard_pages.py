"""The read-only pages list what the API lists: workflows and agents with every version,
schedules and dead letters."""

from __future__ import annotations

import html

import pytest
import yaml
from flask.testing import FlaskClient

from agent33.automation import dead_letters
from agent33.config import Settings
from agent33.db import session_scope
from tests.integration.dashboard.helpers import log_in_with_key

pytestmark = [pytest.mark.dashboard, pytest.mark.usefixtures("empty_rate_buckets")]


def page(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    return html.unescape(answer.get_data(as_text=True))


def test_workflows_agents_schedules_and_dead_letters(
    client: FlaskClient, admin_headers: dict[str, str], settings: Settings, stored_workflows: None
) -> None:
    agent = yaml.safe_load((settings.definitions_dir / "agents" / "assistant.yaml").read_text())
    for version in (1, 2):
        stored = client.post(
            "/api/v1/agents", json={**agent, "version": version}, headers=admin_headers
        )
        assert stored.status_code == 201, stored.get_json()
    schedule = {"name": "nightly", "workflow": "example_approval", "cron": "0 2 * * *"}
    assert client.post("/api/v1/schedules", json=schedule, headers=admin_headers).status_code == 201
    with session_scope() as session:
        dead_letters.record(
            session=session,
            kind="webhook",
            ref="delivery-42",
            payload={},
            attempts=5,
            last_error="receiver answered 500",
        )
    log_in_with_key(client, admin_headers)

    listed = page(client, "/workflows")
    assert 'href="/workflows/example_approval"' in listed
    flow = page(client, "/workflows/example_approval")
    assert "<strong>v1</strong>" in flow and 'id="dag"' in flow
    assert 'data-step="gate"' in flow and 'id="in-release"' in flow and 'value="v1.0"' in flow
    assert page(client, "/workflows/example_approval?version=1") == flow
    assert client.get("/workflows/example_approval?version=7").status_code == 404
    assert client.get("/workflows/example_approval?version=x").status_code == 400

    assert 'href="/agents/assistant"' in page(client, "/agents")
    latest = page(client, "/agents/assistant")
    assert "<strong>v2</strong>" in latest and 'href="/agents/assistant?version=1"' in latest
    assert "<strong>v1</strong>" in page(client, "/agents/assistant?version=1")

    schedules = page(client, "/schedules")
    assert "nightly" in schedules and "<code>0 2 * * *</code>" in schedules
    letters = page(client, "/dead-letters")
    assert "delivery-42" in letters and "receiver answered 500" in letters

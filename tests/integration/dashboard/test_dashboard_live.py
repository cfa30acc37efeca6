"""The run page's live stream and its buttons, against the real broker and worker."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.integration.dashboard.helpers import log_in_with_key

pytestmark = [
    pytest.mark.dashboard,
    pytest.mark.usefixtures("celery_worker", "stored_workflows", "empty_rate_buckets"),
]


def events_of(client: FlaskClient, run_id: str) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs from the run's Server-Sent Events stream, as they arrive."""
    response = client.get(f"/runs/{run_id}/live", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    buffer = ""
    try:
        for chunk in response.response:
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = dict(
                    line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
                )
                if "event" in fields:
                    yield fields["event"], json.loads(fields["data"])
    finally:
        response.close()


def steps(snapshot: dict[str, Any]) -> dict[str, str]:
    return {step["step_id"]: step["state"] for step in snapshot["steps"]}


def start(client: FlaskClient, token: str) -> str:
    answer = client.post(
        "/workflows/example_approval/runs", data={"release": "v9", "csrf_token": token}
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    found = re.fullmatch(r"/runs/([0-9a-f-]{36})", answer.headers["Location"])
    assert found
    return found.group(1)


def test_the_stream_follows_a_run_through_its_approval_to_the_end(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    token = log_in_with_key(client, admin_headers)
    run_id = start(client, token)
    seen: list[dict[str, str]] = []
    approved = False
    deadline = time.monotonic() + 60
    for event, data in events_of(client, run_id):
        assert time.monotonic() < deadline, seen
        if event == "end":
            assert data == {"state": "succeeded"}
            break
        seen.append(steps(data))
        gate = next(s for s in data["steps"] if s["step_id"] == "gate")
        if gate["awaiting_approval"] and not approved:
            assert steps(data) == {"prepare": "succeeded", "gate": "waiting", "publish": "pending"}
            answer = client.post(
                f"/runs/{run_id}/approve",
                data={"step_id": "gate", "approved": "true", "csrf_token": token},
                headers={"Accept": "application/json"},
            )
            assert answer.status_code == 200, answer.get_data(as_text=True)
            assert answer.get_json() == {"message": "step gate approved", "ok": True}
            approved = True
    else:
        raise AssertionError(f"the stream ended without `end`: {seen}")
    assert approved
    assert seen[-1] == {"prepare": "succeeded", "gate": "succeeded", "publish": "succeeded"}
    assert len(seen) >= 3  # several snapshots: it was sent as it changed, not once at the end

    page = html.unescape(client.get(f"/runs/{run_id}").get_data(as_text=True))
    assert 'class="node state-succeeded" data-step="publish"' in page
    assert '"published": "v9"' in page
    # A finished run's stream sends its state once and ends at once.
    assert [event for event, _ in events_of(client, run_id)] == ["run", "end"]


def test_buttons_answer_conflicts_and_a_reject_fails_the_run(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    token = log_in_with_key(client, admin_headers)
    run_id = start(client, token)
    resume = client.post(f"/runs/{run_id}/resume", data={"csrf_token": token})
    assert resume.status_code == 302  # a refusal is flashed on the run page
    flashed = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert '<p class="flash error" role="status">only failed or cancelled runs resume' in flashed
    for _, data in events_of(client, run_id):
        if any(s["awaiting_approval"] for s in data["steps"]):
            break
    early = client.post(
        f"/runs/{run_id}/approve",
        data={"step_id": "publish", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert early.status_code == 409
    assert "not awaiting an approval" in early.get_json()["message"]
    rejected = client.post(
        f"/runs/{run_id}/approve",
        data={"step_id": "gate", "approved": "false", "comment": "not now", "csrf_token": token},
    )
    assert rejected.status_code == 302
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert '<p class="flash ok" role="status">step gate rejected</p>' in page
    *_, (last, data) = list(events_of(client, run_id))
    assert last == "end" and data == {"state": "failed"}
    assert "rejected by api_key:" in client.get(f"/runs/{run_id}").get_data(as_text=True)

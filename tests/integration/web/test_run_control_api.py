"""Cancel, resume and approve over HTTP against the real broker and worker."""

from __future__ import annotations

import importlib.util
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.integration.web.conftest import Start
from tests.plugins.web import MakeApiKey

RUNS = "/api/v1/runs"
# Only while the engine's operator actions are missing; once they exist, failures are real.
ENGINE_PENDING = pytest.mark.xfail(
    importlib.util.find_spec("agent33.engine.lifecycle") is None,
    reason="engine control pending",
    strict=False,
)

GATED = {
    "name": "gated",
    "inputs": {"type": "object"},
    "steps": [
        {"id": "first", "action": "transform", "with": {"x": "{{ 1 }}"}},
        {
            "id": "gate",
            "action": "wait",
            "depends_on": ["first"],
            "with": {"approval": True, "prompt": "ship it?"},
        },
        {"id": "after", "action": "transform", "depends_on": ["gate"], "with": {"y": "{{ 2 }}"}},
    ],
}
SIMPLE = {
    "name": "simple",
    "inputs": {"type": "object"},
    "steps": [{"id": "only", "action": "transform", "with": {"x": "{{ 1 }}"}}],
}
FAILING = {
    "name": "failing",
    "inputs": {"type": "object"},
    "steps": [
        {"id": "ok", "action": "transform", "with": {"x": "{{ 1 }}"}},
        {
            "id": "boom",
            "action": "transform",
            "depends_on": ["ok"],
            "with": {"x": "{{ inputs.missing_key }}"},
        },
    ],
}


def wait_for(
    client: FlaskClient, headers: dict[str, str], run_id: str, states: set[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{RUNS}/{run_id}", headers=headers).get_json()
        if run["state"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {states}: {run}")


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["step_id"]: step for step in run["steps"]}


def test_state_filter_is_validated_and_applied(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    bad = client.get(f"{RUNS}?state=finished", headers=headers)
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["fields"]) == {"state"}
    page = client.get(f"{RUNS}?state=waiting&workflow=gated&limit=5&offset=0", headers=headers)
    assert page.status_code == 200
    assert page.get_json() == {"items": [], "total": 0, "limit": 5, "offset": 0}


def test_approve_body_is_validated_naming_the_field(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    url = f"{RUNS}/{uuid.uuid4()}/approve"
    missing = client.post(url, json={"approved": True}, headers=headers)
    assert missing.status_code == 400
    assert missing.get_json()["error"]["fields"] == {
        "step_id": ["Missing data for required field."]
    }
    long = client.post(url, json={"step_id": "gate", "comment": "x" * 2001}, headers=headers)
    assert long.status_code == 400
    assert set(long.get_json()["error"]["fields"]) == {"comment"}


def test_control_needs_runs_write(client: FlaskClient, make_api_key: MakeApiKey) -> None:
    reader = make_api_key(["runs:read"])
    for action in ("cancel", "resume", "approve"):
        response = client.post(f"{RUNS}/{uuid.uuid4()}/{action}", json={}, headers=reader)
        assert response.status_code == 403, action


@ENGINE_PENDING
def test_control_of_an_unknown_run_is_404(client: FlaskClient, headers: dict[str, str]) -> None:
    for action, body in (("cancel", None), ("resume", None), ("approve", {"step_id": "gate"})):
        response = client.post(f"{RUNS}/{uuid.uuid4()}/{action}", json=body, headers=headers)
        assert response.status_code == 404, (action, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"


@ENGINE_PENDING
@pytest.mark.usefixtures("celery_worker")
def test_finished_run_cannot_be_cancelled_or_resumed(
    client: FlaskClient, headers: dict[str, str], start: Start
) -> None:
    run_id = start(SIMPLE)
    assert wait_for(client, headers, run_id, {"succeeded", "failed"})["state"] == "succeeded"
    for action in ("cancel", "resume"):
        response = client.post(f"{RUNS}/{run_id}/{action}", headers=headers)
        assert response.status_code == 409, (action, response.get_json())
    approve = client.post(f"{RUNS}/{run_id}/approve", json={"step_id": "only"}, headers=headers)
    assert approve.status_code == 409
    unknown = client.post(f"{RUNS}/{run_id}/approve", json={"step_id": "nope"}, headers=headers)
    assert unknown.status_code == 404
    assert client.get(f"{RUNS}/{run_id}", headers=headers).get_json()["state"] == "succeeded"


@ENGINE_PENDING
@pytest.mark.usefixtures("celery_worker")
def test_cancel_a_run_waiting_for_approval(
    client: FlaskClient, headers: dict[str, str], start: Start
) -> None:
    run_id = start(GATED)
    wait_for(client, headers, run_id, {"waiting"})
    response = client.post(f"{RUNS}/{run_id}/cancel", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"id": run_id, "state": "cancelled"}
    run = client.get(f"{RUNS}/{run_id}", headers=headers).get_json()
    assert run["state"] == "cancelled"
    steps = steps_of(run)
    assert steps["first"]["state"] == "succeeded"
    assert steps["gate"]["state"] == steps["after"]["state"] == "cancelled"
    assert client.post(f"{RUNS}/{run_id}/cancel", headers=headers).status_code == 409
    listed = client.get(f"{RUNS}?state=cancelled&workflow=gated", headers=headers).get_json()
    assert [item["id"] for item in listed["items"]] == [run_id]


@ENGINE_PENDING
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.parametrize(("approved", "final"), [(True, "succeeded"), (False, "failed")])
def test_approve_or_reject_a_waiting_step(
    client: FlaskClient, headers: dict[str, str], start: Start, approved: bool, final: str
) -> None:
    run_id = start(GATED)
    wait_for(client, headers, run_id, {"waiting"})
    body = {"step_id": "gate", "approved": approved, "comment": "looks fine"}
    response = client.post(f"{RUNS}/{run_id}/approve", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == run_id
    run = wait_for(client, headers, run_id, {"succeeded", "failed", "cancelled"})
    assert run["state"] == final, run
    gate = steps_of(run)["gate"]
    assert gate["output"]["approved"] is approved
    assert gate["output"]["comment"] == "looks fine"
    assert gate["output"]["by"].startswith("api_key:")
    assert steps_of(run)["after"]["state"] == ("succeeded" if approved else "cancelled")
    again = client.post(f"{RUNS}/{run_id}/approve", json=body, headers=headers)
    assert again.status_code == 409


@ENGINE_PENDING
@pytest.mark.usefixtures("celery_worker")
def test_resume_reruns_only_what_did_not_succeed(
    client: FlaskClient, headers: dict[str, str], start: Start
) -> None:
    run_id = start(FAILING)
    failed = wait_for(client, headers, run_id, {"succeeded", "failed"})
    assert failed["state"] == "failed", failed
    before = steps_of(failed)
    assert before["ok"]["state"] == "succeeded" and before["boom"]["state"] == "failed"

    response = client.post(f"{RUNS}/{run_id}/resume", headers=headers)
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"id": run_id, "state": "running"}
    again = wait_for(client, headers, run_id, {"succeeded", "failed", "cancelled"})
    after = steps_of(again)
    assert again["state"] == "failed"  # the input is still missing
    assert after["boom"]["attempt"] > before["boom"]["attempt"]
    assert after["ok"]["attempt"] == before["ok"]["attempt"] == 1
    assert after["ok"]["finished_at"] == before["ok"]["finished_at"]

"""`POST /api/v1/runs/<id>/rerun|pin|unpin` over HTTP against the real broker and worker."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from tests.integration.web.conftest import Start
from tests.integration.web.test_run_control_api import GATED, RUNS, steps_of, wait_for
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.run_control

SIMPLE_CHAIN = {
    "name": "chain",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "steps": [
        {"id": "first", "action": "transform", "with": {"x": "{{ 1 }}"}},
        {
            "id": "second",
            "action": "transform",
            "depends_on": ["first"],
            "with": {"n": "{{ inputs.n | default(0) }}"},
        },
    ],
}


@pytest.mark.usefixtures("celery_worker")
def test_rerun_over_http(client: FlaskClient, headers: dict[str, str], start: Start) -> None:
    run_id = start(SIMPLE_CHAIN)
    original = wait_for(client, headers, run_id, {"succeeded"})
    response = client.post(
        f"{RUNS}/{run_id}/rerun", json={"from": "second", "inputs": {"n": 7}}, headers=headers
    )
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["rerun_of"] == run_id and body["from"] == "second"
    assert body["copied"] == ["first"]
    rerun = wait_for(client, headers, body["id"], {"succeeded", "failed"})
    assert rerun["state"] == "succeeded" and rerun["rerun_of"] == run_id
    steps = steps_of(rerun)
    assert steps["first"]["copied_from"] == run_id
    assert steps["first"]["output"] == steps_of(original)["first"]["output"]
    assert steps["second"]["copied_from"] is None and steps["second"]["output"] == {"n": 7}


@pytest.mark.usefixtures("celery_worker")
def test_rerun_errors_name_the_field(
    client: FlaskClient, headers: dict[str, str], start: Start
) -> None:
    running = start(GATED)
    wait_for(client, headers, running, {"waiting"})
    busy = client.post(f"{RUNS}/{running}/rerun", json={"from": "gate"}, headers=headers)
    assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "conflict"
    client.post(f"{RUNS}/{running}/cancel", headers=headers)
    unknown = client.post(f"{RUNS}/{running}/rerun", json={"from": "ghost"}, headers=headers)
    assert unknown.status_code == 422
    assert set(unknown.get_json()["error"]["fields"]) == {"from"}
    missing = client.post(f"{RUNS}/{running}/rerun", json={}, headers=headers)
    assert missing.status_code == 400
    assert set(missing.get_json()["error"]["fields"]) == {"from"}
    bad_inputs = client.post(
        f"{RUNS}/{running}/rerun", json={"from": "gate", "inputs": [1]}, headers=headers
    )
    assert bad_inputs.status_code == 400
    assert set(bad_inputs.get_json()["error"]["fields"]) == {"inputs"}
    absent = client.post(f"{RUNS}/{uuid.uuid4()}/rerun", json={"from": "x"}, headers=headers)
    assert absent.status_code == 404


@pytest.mark.usefixtures("celery_worker")
def test_pin_and_unpin(client: FlaskClient, headers: dict[str, str], start: Start) -> None:
    run_id = start(SIMPLE_CHAIN)
    wait_for(client, headers, run_id, {"succeeded"})
    assert client.get(f"{RUNS}/{run_id}", headers=headers).get_json()["pinned"] is False
    pinned = client.post(f"{RUNS}/{run_id}/pin", headers=headers)
    assert pinned.status_code == 200 and pinned.get_json() == {"id": run_id, "pinned": True}
    assert client.get(f"{RUNS}/{run_id}", headers=headers).get_json()["pinned"] is True
    unpinned = client.post(f"{RUNS}/{run_id}/unpin", headers=headers)
    assert unpinned.get_json() == {"id": run_id, "pinned": False}
    assert client.post(f"{RUNS}/{uuid.uuid4()}/pin", headers=headers).status_code == 404


def test_run_control_needs_runs_write(client: FlaskClient, make_api_key: MakeApiKey) -> None:
    reader = make_api_key(["runs:read"])
    for action, body in (("rerun", {"from": "a"}), ("pin", None), ("unpin", None)):
        response = client.post(f"{RUNS}/{uuid.uuid4()}/{action}", json=body, headers=reader)
        assert response.status_code == 403, action

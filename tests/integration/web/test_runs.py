"""Starting and reading runs over HTTP: 202 at once, idempotent retries, full run detail."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

RUNS_URL = "/api/v1/workflows/demo_greeting/runs"


@pytest.fixture
def headers(make_api_key: Any) -> dict[str, str]:
    return make_api_key(["runs:read", "runs:write", "workflows:read"])


@pytest.mark.usefixtures("stored_workflows")
def test_workflows_are_listed_and_readable(client: FlaskClient, headers: dict[str, str]) -> None:
    listing = client.get("/api/v1/workflows", headers=headers).get_json()
    assert "demo_greeting" in [item["name"] for item in listing["items"]]
    assert listing["total"] == len(listing["items"])
    detail = client.get("/api/v1/workflows/demo_greeting?version=1", headers=headers)
    assert detail.status_code == 200
    assert detail.get_json()["spec"]["name"] == "demo_greeting"
    assert (
        client.get("/api/v1/workflows/demo_greeting?version=99", headers=headers).status_code == 404
    )


@pytest.mark.usefixtures("stored_workflows", "celery_worker")
def test_started_run_answers_202_and_is_published_after_commit(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.post(RUNS_URL, json={"inputs": {"name": "ada"}}, headers=headers)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    run_id = uuid.UUID(body["id"])
    assert body["workflow"] == "demo_greeting"
    assert body["version"] == 1
    assert body["links"] == {"self": f"/api/v1/runs/{run_id}"}
    assert response.headers["Location"] == f"/api/v1/runs/{run_id}"

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()
        if run["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert run["state"] == "succeeded", run
    assert run["outputs"]["greeting"] == "Hello, Ada!"
    assert run["created_by"].startswith("api_key:")
    assert [s["step_id"] for s in run["steps"]] == ["normalise", "greet", "summarise"]
    assert all(s["state"] == "succeeded" and s["attempt"] == 1 for s in run["steps"])
    assert run["events"][0]["kind"] == "run.created"
    assert "data" not in run["events"][0]


@pytest.mark.usefixtures("stored_workflows")
def test_repeated_idempotency_key_returns_the_same_run_with_200(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    request = {"json": {"inputs": {"name": "ada"}}, "headers": {**headers, "Idempotency-Key": "k1"}}
    first = client.post(RUNS_URL, **request)
    again = client.post(RUNS_URL, **request)
    assert first.status_code == 202
    assert again.status_code == 200
    # The same run (the worker may have started it in between, so its state can differ).
    assert {**again.get_json(), "state": None} == {**first.get_json(), "state": None}
    page = client.get("/api/v1/runs?workflow=demo_greeting", headers=headers).get_json()
    assert page["total"] == 1


@pytest.mark.usefixtures("stored_workflows")
def test_inputs_failing_the_workflow_schema_are_400(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.post(RUNS_URL, json={}, headers=headers)  # `name` is required
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == {"inputs": ["'name' is a required property"]}
    response = client.post(RUNS_URL, json={"inputs": {"name": 5}}, headers=headers)
    assert set(response.get_json()["error"]["fields"]) == {"inputs.name"}


@pytest.mark.usefixtures("stored_workflows")
def test_runs_are_paged(client: FlaskClient, headers: dict[str, str]) -> None:
    for n in range(3):
        client.post(RUNS_URL, json={"inputs": {"name": f"n{n}"}}, headers=headers)
    page = client.get("/api/v1/runs?limit=2&offset=1", headers=headers).get_json()
    assert page["total"] == 3
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert len(page["items"]) == 2
    assert {"id", "workflow", "version", "state", "inputs", "created_at"} <= set(page["items"][0])


def test_unknown_run_is_404(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get(f"/api/v1/runs/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"

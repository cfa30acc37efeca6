"""Storing, validating, versioning and deleting workflow definitions over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from agent33.db import session_scope
from agent33.db.models import WorkflowDefinition
from agent33.engine.service import start_run
from tasks.app import current_settings
from tests.plugins.web import MakeApiKey

URL = "/api/v1/workflows"


def document(name: str = "flow_a", version: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "description": "two transform steps",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "a", "action": "transform", "with": {"x": "{{ inputs.x | default(1) }}"}},
            {"id": "b", "action": "transform", "depends_on": ["a"], "with": {"y": "{{ 2 }}"}},
        ],
        "outputs": {"y": "{{ steps.b.output.y }}"},
        **changes,
    }


def stored_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(WorkflowDefinition)) or 0)


def start_a_run(name: str, version: int) -> None:
    """A run referencing that version (not published: no worker is needed here)."""
    with session_scope() as session:
        start_run(
            session=session,
            settings=current_settings(),
            workflow_name=name,
            inputs={},
            version=version,
        )


@pytest.fixture
def headers(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["workflows:read", "workflows:write"])


def test_create_then_identical_resave_then_changed_body(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    created = client.post(URL, json=document(), headers=headers)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["name"], body["version"], body["source"]) == ("flow_a", 1, "api")
    assert body["spec"]["steps"][1]["depends_on"] == ["a"]
    assert created.headers["Location"] == "/api/v1/workflows/flow_a?version=1"

    again = client.post(URL, json=document(), headers=headers)
    assert again.status_code == 200
    assert again.get_json()["checksum"] == body["checksum"]

    changed = client.post(URL, json=document(description="other"), headers=headers)
    assert changed.status_code == 409
    assert "version" in changed.get_json()["error"]["fields"]
    assert stored_count() == 1
    assert client.get(f"{URL}/flow_a", headers=headers).get_json()["description"] == (
        "two transform steps"
    )


INVALID = {
    "cycle": (
        [
            {"id": "a", "action": "transform", "depends_on": ["b"]},
            {"id": "b", "action": "transform", "depends_on": ["a"]},
        ],
        "steps.b.depends_on",
    ),
    "unknown_dependency": (
        [{"id": "a", "action": "transform", "depends_on": ["zz"]}],
        "steps.a.depends_on",
    ),
    "unknown_action": ([{"id": "a", "action": "no_such_action"}], "steps.a.action"),
    "bad_expression": (
        [{"id": "a", "action": "transform", "with": {"x": "{{ inputs.x + }}"}}],
        "steps.a.with",
    ),
    "bad_step_id": ([{"id": "a b", "action": "transform"}], "steps.a b.id"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_definitions_are_400_naming_the_field_and_store_nothing(
    client: FlaskClient, headers: dict[str, str], case: str
) -> None:
    steps, field = INVALID[case]
    doc = document(steps=steps, outputs={})
    for url in (URL, f"{URL}/validate"):
        response = client.post(url, json=doc, headers=headers)
        assert response.status_code == 400, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == "invalid_definition"
        assert set(error["fields"]) == {field}, error
        assert "flow_a" in error["message"]
    assert client.put(f"{URL}/flow_a", json=doc, headers=headers).status_code == 400
    assert stored_count() == 0


def test_body_that_is_not_a_workflow_is_400(client: FlaskClient, headers: dict[str, str]) -> None:
    missing = client.post(URL, json={"name": "flow_a"}, headers=headers)
    assert missing.status_code == 400
    assert set(missing.get_json()["error"]["fields"]) == {"steps"}
    unknown = client.post(URL, json=document(colour="red"), headers=headers)
    assert unknown.get_json()["error"]["fields"] == {"colour": ["Unknown field."]}
    not_object = client.post(URL, json=[1], headers=headers)
    assert not_object.status_code == 400
    assert stored_count() == 0


def test_validate_stores_nothing_and_needs_only_read(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    reader = make_api_key(["workflows:read"])
    response = client.post(f"{URL}/validate", json=document(version=3), headers=reader)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"valid": True, "name": "flow_a", "version": 3, "steps": 2}
    assert stored_count() == 0


def test_read_scope_cannot_write(client: FlaskClient, make_api_key: MakeApiKey) -> None:
    reader = make_api_key(["workflows:read"])
    for method, url in (("post", URL), ("put", f"{URL}/flow_a"), ("delete", f"{URL}/flow_a")):
        response = getattr(client, method)(url, json=document(), headers=reader)
        assert response.status_code == 403, (method, url)
        assert response.get_json()["error"]["fields"] == {"scopes": ["Requires 'workflows:write'."]}
    assert stored_count() == 0


def test_put_stores_only_newer_versions_of_the_urls_workflow(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    first = client.put(f"{URL}/flow_a", json=document(), headers=headers)
    assert first.status_code == 201, first.get_json()

    renamed = client.put(f"{URL}/flow_b", json=document(), headers=headers)
    assert renamed.status_code == 400
    assert set(renamed.get_json()["error"]["fields"]) == {"name"}

    same = client.put(f"{URL}/flow_a", json=document(), headers=headers)
    assert same.status_code == 409
    assert same.get_json()["error"]["fields"] == {
        "version": ["must be greater than the stored version 1"]
    }

    newer = client.put(f"{URL}/flow_a", json=document(version=2, description="v2"), headers=headers)
    assert newer.status_code == 201
    assert newer.headers["Location"] == "/api/v1/workflows/flow_a?version=2"
    older = client.put(f"{URL}/flow_a", json=document(version=1, description="x"), headers=headers)
    assert older.status_code == 409
    latest = client.get(f"{URL}/flow_a", headers=headers).get_json()
    assert (latest["version"], latest["description"]) == (2, "v2")
    assert stored_count() == 2


def test_delete_refuses_versions_that_runs_reference(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    for version in (1, 2):
        assert client.post(URL, json=document(version=version), headers=headers).status_code == 201
    start_a_run("flow_a", 1)
    start_a_run("flow_a", 1)

    one = client.delete(f"{URL}/flow_a?version=1", headers=headers)
    assert one.status_code == 409
    error = one.get_json()["error"]
    assert error["fields"] == {"version": ["version 1 is referenced by 2 run(s)"]}
    assert "2 run(s)" in error["message"]

    every = client.delete(f"{URL}/flow_a", headers=headers)
    assert every.status_code == 409
    assert stored_count() == 2  # nothing deleted, not even the unreferenced version 2

    two = client.delete(f"{URL}/flow_a?version=2", headers=headers)
    assert two.status_code == 200
    assert two.get_json() == {"name": "flow_a", "versions": [2]}
    assert client.get(f"{URL}/flow_a?version=2", headers=headers).status_code == 404
    assert client.get(f"{URL}/flow_a", headers=headers).get_json()["version"] == 1


def test_delete_without_runs(client: FlaskClient, headers: dict[str, str]) -> None:
    for name, version in (("flow_a", 1), ("flow_a", 2), ("flow_b", 1)):
        client.post(URL, json=document(name=name, version=version), headers=headers)
    gone = client.delete(f"{URL}/flow_a", headers=headers)
    assert gone.status_code == 200
    assert gone.get_json() == {"name": "flow_a", "versions": [1, 2]}
    assert client.get(f"{URL}/flow_a", headers=headers).status_code == 404
    assert client.delete(f"{URL}/flow_a", headers=headers).status_code == 404
    assert client.delete(f"{URL}/flow_b?version=7", headers=headers).status_code == 404
    assert stored_count() == 1

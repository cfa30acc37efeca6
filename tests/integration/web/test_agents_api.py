"""`/api/v1/agents`: store, validate, browse; invalid documents are 400 naming the field."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

DOC: dict[str, Any] = {
    "name": "helper",
    "model": "ollama/llama3.2",
    "system_prompt": "Be brief.",
    "tools": ["calculator"],
}


def test_store_get_and_list(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    created = client.post("/api/v1/agents", json=DOC, headers=admin_headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["spec"]["tools"] == ["calculator"]
    again = client.post("/api/v1/agents", json=DOC, headers=admin_headers)
    assert again.status_code == 200
    changed = client.post(
        "/api/v1/agents", json={**DOC, "system_prompt": "x"}, headers=admin_headers
    )
    assert changed.status_code == 409
    got = client.get("/api/v1/agents/helper", headers=admin_headers)
    assert got.status_code == 200 and got.get_json()["version"] == 1
    listing = client.get("/api/v1/agents", headers=admin_headers).get_json()
    assert [a["name"] for a in listing["items"]] == ["helper"]
    assert client.get("/api/v1/agents/nobody", headers=admin_headers).status_code == 404


def test_invalid_agent_names_the_field(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    bad_tool = client.post(
        "/api/v1/agents", json={**DOC, "tools": ["rm_rf"]}, headers=admin_headers
    )
    assert bad_tool.status_code == 400
    assert "tools" in bad_tool.get_json()["error"]["fields"]
    no_model = client.post("/api/v1/agents", json={"name": "x"}, headers=admin_headers)
    assert no_model.status_code == 400 and "model" in no_model.get_json()["error"]["fields"]
    bad_queue = client.post("/api/v1/agents", json={**DOC, "queue": "steps"}, headers=admin_headers)
    assert bad_queue.status_code == 400 and "queue" in bad_queue.get_json()["error"]["fields"]
    assert client.get("/api/v1/agents", headers=admin_headers).get_json()["total"] == 0


def test_scopes(client: FlaskClient, make_api_key: Any) -> None:
    reader = make_api_key(["agents:read"])
    assert client.get("/api/v1/agents", headers=reader).status_code == 200
    assert client.post("/api/v1/agents", json=DOC, headers=reader).status_code == 403
    assert client.get("/api/v1/agents").status_code == 401


def test_new_versions_and_delete(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    assert client.post("/api/v1/agents", json=DOC, headers=admin_headers).status_code == 201
    same = client.put("/api/v1/agents/helper", json=DOC, headers=admin_headers)
    assert same.status_code == 409 and "version" in same.get_json()["error"]["fields"]
    wrong = client.put("/api/v1/agents/other", json={**DOC, "version": 2}, headers=admin_headers)
    assert wrong.status_code == 400 and "name" in wrong.get_json()["error"]["fields"]
    v2 = client.put("/api/v1/agents/helper", json={**DOC, "version": 2}, headers=admin_headers)
    assert v2.status_code == 201 and v2.get_json()["version"] == 2
    assert client.get("/api/v1/agents/helper", headers=admin_headers).get_json()["version"] == 2
    one = client.delete("/api/v1/agents/helper?version=2", headers=admin_headers)
    assert one.status_code == 204
    assert client.get("/api/v1/agents/helper", headers=admin_headers).get_json()["version"] == 1
    assert client.delete("/api/v1/agents/helper", headers=admin_headers).status_code == 204
    assert client.delete("/api/v1/agents/helper", headers=admin_headers).status_code == 404

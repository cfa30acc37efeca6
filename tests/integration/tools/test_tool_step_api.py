"""Storing a workflow whose `action: tool` step names an unknown tool: 400 naming the field."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_unknown_tool_in_a_step_is_a_400_naming_the_field(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    document = {
        "name": "bad_tool_step",
        "steps": [{"id": "go", "action": "tool", "with": {"name": "no_such_tool"}}],
    }
    reply = client.post("/api/v1/workflows", json=document, headers=admin_headers)
    assert reply.status_code == 400, reply.get_json()
    error = reply.get_json()["error"]
    assert "unknown tool 'no_such_tool'" in error["fields"]["steps.go.with.name"][0]
    document["steps"][0]["with"] = {"name": "run_status"}  # a tool from definitions/tools/
    assert client.post("/api/v1/workflows", json=document, headers=admin_headers).status_code == 201

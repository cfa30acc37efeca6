"""The OpenAPI document is served openly and describes every route, body and response."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

EXPECTED_OPERATIONS = {
    ("/health", "get"),
    ("/api/v1/auth/token", "post"),
    ("/api/v1/auth/me", "get"),
    ("/api/v1/auth/refresh", "post"),
    ("/api/v1/auth/logout", "post"),
    ("/api/v1/audit", "get"),
    ("/api/v1/keys", "get"),
    ("/api/v1/keys", "post"),
    ("/api/v1/keys/{key_id}", "delete"),
    ("/api/v1/secrets", "get"),
    ("/api/v1/secrets/{name}", "put"),
    ("/api/v1/secrets/{name}", "delete"),
    ("/api/v1/workflows", "get"),
    ("/api/v1/workflows/{name}", "get"),
    ("/api/v1/workflows/{name}/runs", "post"),
    ("/api/v1/runs", "get"),
    ("/api/v1/runs/{run_id}", "get"),
    ("/api/v1/workflows", "post"),
    ("/api/v1/workflows/validate", "post"),
    ("/api/v1/workflows/{name}", "put"),
    ("/api/v1/workflows/{name}", "delete"),
    ("/api/v1/runs/{run_id}/cancel", "post"),
    ("/api/v1/runs/{run_id}/resume", "post"),
    ("/api/v1/runs/{run_id}/approve", "post"),
    ("/api/v1/runs/{run_id}/lineage", "get"),
    ("/api/v1/alerts", "get"),
    ("/api/v1/runs/{run_id}/rerun", "post"),
    ("/api/v1/runs/{run_id}/pin", "post"),
    ("/api/v1/runs/{run_id}/unpin", "post"),
    ("/api/v1/runs/{run_id}/replay", "post"),
    ("/api/v1/runs/{run_id}/diff", "get"),
    ("/api/v1/runs/{run_id}/budget", "post"),
    ("/api/v1/agents", "get"),
    ("/api/v1/agents", "post"),
    ("/api/v1/agents/{name}", "get"),
    ("/api/v1/agents/{name}", "put"),
    ("/api/v1/agents/{name}", "delete"),
    ("/api/v1/chat", "post"),
    ("/api/v1/webhooks/{workflow}", "post"),
    ("/api/v1/sensors", "get"),
    ("/api/v1/sensors", "post"),
    ("/api/v1/sensors/{name}", "get"),
    ("/api/v1/sensors/{name}", "delete"),
    ("/api/v1/events/{name}", "post"),
    ("/api/v1/chat/sessions/{session_id}", "get"),
    ("/api/v1/memory/collections", "get"),
    ("/api/v1/memory/collections", "post"),
    ("/api/v1/memory/collections/{name}", "get"),
    ("/api/v1/memory/collections/{name}", "patch"),
    ("/api/v1/memory/collections/{name}", "delete"),
    ("/api/v1/memory/collections/{name}/documents", "get"),
    ("/api/v1/memory/collections/{name}/documents", "post"),
    ("/api/v1/memory/documents/{document_id}", "get"),
    ("/api/v1/memory/documents/{document_id}", "delete"),
    ("/api/v1/memory/jobs/{job_id}", "get"),
    ("/api/v1/memory/search", "post"),
    ("/api/v1/memory/memories", "get"),
    ("/api/v1/memory/memories", "post"),
    ("/api/v1/memory/memories/{document_id}", "delete"),
    ("/api/v1/schedules", "get"),
    ("/api/v1/schedules", "post"),
    ("/api/v1/schedules/{name}", "get"),
    ("/api/v1/schedules/{name}", "patch"),
    ("/api/v1/schedules/{name}", "delete"),
    ("/api/v1/schedules/{name}/pause", "post"),
    ("/api/v1/schedules/{name}/resume", "post"),
    ("/api/v1/schedules/{name}/trigger", "post"),
    ("/api/v1/schedules/{name}/upcoming", "get"),
    ("/api/v1/webhook-subscriptions", "get"),
    ("/api/v1/webhook-subscriptions", "post"),
    ("/api/v1/webhook-subscriptions/{webhook_id}", "get"),
    ("/api/v1/webhook-subscriptions/{webhook_id}", "patch"),
    ("/api/v1/webhook-subscriptions/{webhook_id}", "delete"),
    ("/api/v1/webhook-subscriptions/{webhook_id}/deliveries", "get"),
    ("/api/v1/deadletters", "get"),
    ("/api/v1/deadletters", "delete"),
    ("/api/v1/deadletters/{letter_id}", "get"),
    ("/api/v1/deadletters/{letter_id}", "delete"),
    ("/api/v1/deadletters/{letter_id}/replay", "post"),
    ("/api/v1/channels", "get"),
    ("/api/v1/channels", "post"),
    ("/api/v1/channels/{kind}/{name}", "get"),
    ("/api/v1/channels/{kind}/{name}", "post"),
    ("/api/v1/channels/{kind}/{name}", "delete"),
    ("/api/v1/channels/{kind}/{name}/pairings", "post"),
}


def _spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = json.loads(response.get_data(as_text=True))
    assert isinstance(spec, dict)
    return spec


def _ref_name(content: dict[str, Any]) -> str:
    return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]


def test_spec_is_openapi_3_and_lists_every_operation(client: FlaskClient) -> None:
    spec = _spec(client)
    assert spec["openapi"] == "3.0.3"
    assert spec["info"]["title"] == "Agent33"
    operations = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert operations == EXPECTED_OPERATIONS


def test_every_api_route_in_the_app_is_documented(app: Flask, client: FlaskClient) -> None:
    documented = set(_spec(client)["paths"])
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "api-docs.openapi_json":
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            assert path in documented, rule.rule


def test_request_and_response_schemas_are_published(client: FlaskClient) -> None:
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    for name in ("RunCreate", "RunCreated", "RunDetail", "RunPage", "Step", "Event", "Error"):
        assert name in schemas, name
    assert schemas["RunCreate"]["properties"]["inputs"]["type"] == "object"
    assert set(schemas["RunDetail"]["properties"]) >= {"id", "workflow", "state", "steps", "events"}
    assert "key" in schemas["KeyCreated"]["properties"]
    assert "key" not in schemas["Key"]["properties"]
    assert "fields" in schemas["ErrorBody"]["properties"]

    start = spec["paths"]["/api/v1/workflows/{name}/runs"]["post"]
    assert _ref_name(start["requestBody"]["content"]) == "RunCreate"
    assert _ref_name(start["responses"]["202"]["content"]) == "RunCreated"
    assert "Idempotency-Key" in {p["name"] for p in start["parameters"]}
    assert "400" in start["responses"]


def test_operations_have_summaries_and_security(client: FlaskClient) -> None:
    spec = _spec(client)
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}
    assert spec["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "delete"}:
                assert operation.get("summary"), (path, method)
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/api/v1/auth/token"]["post"]["security"] == []
    assert "security" not in spec["paths"]["/api/v1/runs"]["get"]


def _unbounded_integers(spec: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Integer fields of `schema` (refs followed) that publish no `maximum`."""
    schemas = spec["components"]["schemas"]
    found: list[str] = []
    pending = [(schema, where, frozenset[str]())]
    while pending:
        node, path, seen = pending.pop()
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                pending.append((schemas[name], path, seen | {name}))
            continue
        if node.get("type") == "integer" and "maximum" not in node:
            found.append(path)
        for key, child in node.get("properties", {}).items():
            pending.append((child, f"{path}.{key}", seen))
        if "items" in node:
            pending.append((node["items"], f"{path}[]", seen))
        for child in node.get("allOf", []) + node.get("oneOf", []) + node.get("anyOf", []):
            pending.append((child, path, seen))
    return found


def test_every_integer_a_client_sends_is_bounded(client: FlaskClient) -> None:
    """An unbounded integer input is a number PostgreSQL or int() cannot take: a 500 waiting."""
    spec = _spec(client)
    unbounded: list[str] = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            for parameter in operation.get("parameters", []):
                where = f"{method} {path} ?{parameter['name']}"
                unbounded += _unbounded_integers(spec, parameter.get("schema", {}), where)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                unbounded += _unbounded_integers(spec, body["schema"], f"{method} {path} body")
    assert unbounded == []

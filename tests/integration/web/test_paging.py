"""Every listing publishes one of two envelopes, built by `web.extensions`: a paged one
(`{items, total, limit, offset}`, for listings taking `?limit=&offset=`) or a whole one
(`{items, total}`)."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from tests.plugins.web import MakeApiKey

PAGED = {
    "/api/v1/audit",
    "/api/v1/keys",
    "/api/v1/runs",
    "/api/v1/memory/collections/{name}/documents",
    "/api/v1/memory/memories",
    "/api/v1/webhook-subscriptions/{webhook_id}/deliveries",
    "/api/v1/deadletters",
}


def _listings(client: FlaskClient) -> dict[str, tuple[set[str], dict[str, Any]]]:
    """GET path -> (its query parameter names, its 200 response schema) for every listing."""
    spec = json.loads(client.get("/api/v1/openapi.json").get_data(as_text=True))
    schemas = spec["components"]["schemas"]
    found = {}
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        content = (get or {}).get("responses", {}).get("200", {}).get("content")
        if not content or "$ref" not in content["application/json"]["schema"]:
            continue
        name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        if "items" in schemas[name].get("properties", {}):
            params = {p["name"] for p in get.get("parameters", []) if p["in"] == "query"}
            found[path] = (params, {"name": name, **schemas[name]})
    return found


def test_paged_and_whole_listings_use_the_shared_envelopes(client: FlaskClient) -> None:
    listings = _listings(client)
    assert {path for path, (params, _) in listings.items() if "limit" in params} == PAGED
    for path, (params, schema) in listings.items():
        if path in PAGED:
            assert {"limit", "offset"} <= params, path
            assert schema["name"].endswith("Page"), path
            assert set(schema["properties"]) == {"items", "total", "limit", "offset"}, path
        else:
            assert schema["name"].endswith("List"), path
            assert set(schema["properties"]) == {"items", "total"}, path
        assert schema["properties"]["items"]["type"] == "array", path


def test_a_page_echoes_its_window_and_counts_every_match(
    client: FlaskClient, make_api_key: MakeApiKey, admin_headers: dict[str, str]
) -> None:
    for n in range(3):
        make_api_key(["runs:read"], name=f"reader-{n}")
    first = client.get("/api/v1/keys?limit=2&offset=0", headers=admin_headers).get_json()
    second = client.get("/api/v1/keys?limit=2&offset=2", headers=admin_headers).get_json()
    assert (first["limit"], first["offset"], second["limit"], second["offset"]) == (2, 0, 2, 2)
    assert first["total"] == second["total"] >= 4
    assert len(first["items"]) == 2 and len(second["items"]) == min(2, first["total"] - 2)
    ids = [key["id"] for key in first["items"] + second["items"]]
    assert len(set(ids)) == len(ids), "pages do not overlap"

"""Fixtures shared by the run-control API tests: a key with the run scopes, and `start`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.plugins.web import MakeApiKey

Start = Callable[[dict[str, Any]], str]


@pytest.fixture
def headers(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["runs:read", "runs:write", "workflows:read", "workflows:write"])


@pytest.fixture
def start(client: FlaskClient, headers: dict[str, str]) -> Start:
    """Store a workflow document and start a run of it; returns the run id."""

    def run_of(document: dict[str, Any]) -> str:
        stored = client.post("/api/v1/workflows", json=document, headers=headers)
        assert stored.status_code in (200, 201), stored.get_json()
        started = client.post(
            f"/api/v1/workflows/{document['name']}/runs", json={"inputs": {}}, headers=headers
        )
        assert started.status_code == 202, started.get_json()
        return str(started.get_json()["id"])

    return run_of

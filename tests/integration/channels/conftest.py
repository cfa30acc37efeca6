"""Channels under test: the worker and the API share settings pointed at the fake model
server; each channel's secrets are in the vault and its API URL is a fake platform."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.vault import set_secret, vault_for
from tests.integration.agents.chat_support import save_agents, swapped
from tests.plugins.web import MakeApiKey
from web import create_app


@pytest.fixture
def own(settings: Settings, fake_ollama: Any) -> Iterator[Settings]:
    save_agents([{"name": "helper", "model": "llama3.2", "system_prompt": "Be brief."}])
    tuned = settings.replace(
        ollama_base_url=fake_ollama.url, webhook_retry_base=0.2, webhook_max_attempts=3
    )
    with swapped(tuned) as chosen:
        yield chosen


@pytest.fixture
def api(own: Settings) -> FlaskClient:
    return create_app(own).test_client()


@pytest.fixture
def admin(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["admin"], name="admin")


def put_secrets(settings: Settings, values: dict[str, str]) -> None:
    with session_scope() as session:
        for name, value in values.items():
            set_secret(session=session, vault=vault_for(settings), name=name, value=value)


def add_channel(api: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/channels", json={"agent": "helper", **body}, headers=headers)
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data

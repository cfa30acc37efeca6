"""`POST /api/v1/chat` end to end: API -> `llm` queue -> real in-process worker -> fake Ollama
over real sockets; sessions in Redis and PostgreSQL, tokens relayed as Server-Sent Events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChatMessage
from agent33.definitions.agents import sync_agents
from tests.integration.agents.chat_support import save_agents, sse_events, swapped
from tests.plugins.web import MakeApiKey
from web import create_app

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


@pytest.fixture
def worker_settings(settings: Settings, fake_ollama: Any) -> Iterator[Settings]:
    """The worker talks to this test's fake; the shipped agents plus a tool-less one exist."""
    with session_scope() as session:
        sync_agents(session=session, directory=settings.definitions_dir)
    save_agents([{"name": "plain", "model": "llama3.2", "system_prompt": "Be brief."}])
    with swapped(settings.replace(ollama_base_url=fake_ollama.url)) as own:
        yield own


@pytest.fixture
def chat_client(worker_settings: Settings) -> FlaskClient:
    app: Flask = create_app(worker_settings)
    app.config["AGENT33_CHAT_TIMEOUT"] = 15
    return app.test_client()


@pytest.fixture
def headers(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["agents:read"])


def _body(response: TestResponse) -> dict[str, Any]:
    data = response.get_json()
    assert isinstance(data, dict), response.get_data(as_text=True)
    return data


def test_answer_and_history_of_a_session(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    fake_ollama.script(content="Hello Ada.")
    first = chat_client.post("/api/v1/chat", json={"message": "I am Ada"}, headers=headers)
    assert first.status_code == 200, first.json
    assert _body(first)["answer"] == "Hello Ada."
    assert _body(first)["usage"]["total_tokens"] > 0 and _body(first)["provider"] == "ollama"
    session_id = _body(first)["session_id"]

    fake_ollama.script(content="You are Ada.")
    body = {"message": "Who am I?", "session_id": session_id}
    second = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert second.status_code == 200, second.json
    assert _body(second)["answer"] == "You are Ada." and _body(second)["session_id"] == session_id

    chats = [b for path, b in fake_ollama.requests if path == "/api/chat"]
    sent = [(m["role"], m["content"]) for m in chats[-1]["messages"][1:]]
    assert sent == [
        ("user", "I am Ada"),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
    ]
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(ChatMessage))
    assert count == 4
    stored = chat_client.get(f"/api/v1/chat/sessions/{session_id}", headers=headers)
    assert stored.status_code == 200
    assert [m["role"] for m in _body(stored)["messages"]] == ["user", "assistant"] * 2


def test_history_is_rebuilt_from_the_database_when_the_buffer_expired(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any, settings: Settings
) -> None:
    from agent33.agents.sessions import buffer_key, redis_client

    first = chat_client.post("/api/v1/chat", json={"message": "remember 7"}, headers=headers)
    session_id = _body(first)["session_id"]
    redis_client(settings).delete(buffer_key(session_id))
    body = {"message": "what number?", "session_id": session_id}
    assert chat_client.post("/api/v1/chat", json=body, headers=headers).status_code == 200
    last = [b for path, b in fake_ollama.requests if path == "/api/chat"][-1]
    assert [m["content"] for m in last["messages"][1:3]] == ["remember 7", "echo: remember 7"]


def test_streaming_sends_tokens_then_done(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    fake_ollama.script(content="one two three four")
    body = {"message": "count", "agent": "plain", "stream": True}
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    tokens = [data["delta"] for kind, data in events if kind == "token"]
    assert len(tokens) >= 3 and "".join(tokens) == "one two three four"
    kind, done = events[-1]
    assert kind == "done"
    assert done["answer"] == "one two three four" and done["usage"]["total_tokens"] > 0


def test_streaming_an_agent_with_tools_sends_the_answer_as_one_chunk(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}])
    fake_ollama.script(content="It is 42.")
    body = {"message": "6 times 7?", "stream": True}
    events = sse_events(chat_client.post("/api/v1/chat", json=body, headers=headers).get_data(True))
    assert events[0] == ("token", {"delta": "It is 42."})
    assert events[-1][0] == "done" and events[-1][1]["tool_calls"][0]["result"]["result"] == 42


def test_unknown_agent_is_404_naming_agent(
    chat_client: FlaskClient, headers: dict[str, str]
) -> None:
    body = {"message": "hi", "agent": "nobody"}
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 404
    assert "agent" in _body(response)["error"]["fields"]


def test_provider_down_is_502_naming_the_provider(
    settings: Settings, worker_settings: Settings, headers: dict[str, str]
) -> None:
    dead = settings.replace(ollama_base_url="http://127.0.0.1:9")
    with swapped(dead):
        app = create_app(dead)
        app.config["AGENT33_CHAT_TIMEOUT"] = 15
        started = time.monotonic()
        response = app.test_client().post("/api/v1/chat", json={"message": "hi"}, headers=headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 502, response.json
    assert "ollama" in _body(response)["error"]["message"]
    assert "127.0.0.1:9" in _body(response)["error"]["message"]
    assert elapsed < 15


def test_provider_down_while_streaming_ends_with_an_error_event(
    settings: Settings, worker_settings: Settings, headers: dict[str, str]
) -> None:
    dead = settings.replace(ollama_base_url="http://127.0.0.1:9")
    with swapped(dead):
        app = create_app(dead)
        body = {"message": "hi", "agent": "plain", "stream": True}
        response = app.test_client().post("/api/v1/chat", json=body, headers=headers)
        events = sse_events(response.get_data(as_text=True))
    assert events[-1][0] == "error" and "ollama" in events[-1][1]["message"]


def test_missing_message_is_400_naming_message(
    chat_client: FlaskClient, headers: dict[str, str]
) -> None:
    response = chat_client.post("/api/v1/chat", json={"agent": "assistant"}, headers=headers)
    assert response.status_code == 400
    assert "message" in _body(response)["error"]["fields"]


def test_without_the_scope_is_403(chat_client: FlaskClient, make_api_key: MakeApiKey) -> None:
    headers = make_api_key(["runs:read"])
    response = chat_client.post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 403
    session = chat_client.get(f"/api/v1/chat/sessions/{uuid.uuid4()}", headers=headers)
    assert session.status_code == 403

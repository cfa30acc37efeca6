"""The `remember` tool closes the memory loop: a chat where the model calls it stores a memory
for the caller (API -> `llm` queue -> real worker -> fake Ollama), a later chat by the same
user recalls it in the prompt, another user's never does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.agents.runtime import run_agent
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models.memory import MemoryDocument
from agent33.definitions.agents import AgentDef
from agent33.llm.router import default_router
from agent33.memory import store
from agent33.security.api_keys import parse_prefix
from agent33.tools import ToolContext
from tests.integration.agents.chat_support import chat_client as chat_client_for
from tests.integration.agents.chat_support import last_chat_messages, save_agents
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

COLLECTION = "keeper-notes"
FACT = "Prefers green tea over coffee."


@pytest.fixture
def chat_client(settings: Settings, fake_ollama: Any) -> Iterator[FlaskClient]:
    agents: list[dict[str, Any]] = [
        {
            "name": "keeper",
            "model": "llama3.2",
            "system_prompt": "Remember what matters about the user.",
            "tools": ["remember"],
            "memory": {"long_term": {"enabled": True, "collection": COLLECTION}},
        },
        {
            "name": "forgetful",
            "model": "llama3.2",
            "system_prompt": "Be brief.",
            "tools": ["calculator"],
        },
    ]
    save_agents(agents)
    with chat_client_for(settings.replace(ollama_base_url=fake_ollama.url)) as client:
        yield client


def _chat(client: FlaskClient, headers: dict[str, str], agent: str, message: str) -> Any:
    response = client.post(
        "/api/v1/chat", json={"message": message, "agent": agent}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_remembered_fact_reaches_the_same_users_next_chat_and_nobody_elses(
    chat_client: FlaskClient, make_api_key: MakeApiKey, fake_ollama: Any
) -> None:
    alice = make_api_key(["agents:read"], name="alice")
    bob = make_api_key(["agents:read"], name="bob")
    fake_ollama.script(tool_calls=[{"name": "remember", "arguments": {"text": FACT}}])
    fake_ollama.script(content="Noted.")
    first = _chat(chat_client, alice, "keeper", "I like green tea better than coffee.")
    assert first["answer"] == "Noted."
    [call] = first["tool_calls"]
    assert call["name"] == "remember" and call["result"]["remembered"] is True

    with session_scope() as session:
        document = session.get(MemoryDocument, uuid.UUID(call["result"]["id"]))
        assert document is not None
        collection = store.get_collection(session, COLLECTION)
        assert document.collection_id == collection.id, "the agent's long-term collection"
        assert document.metadata_ == {
            "agent": "keeper",
            "user": f"api_key:{parse_prefix(alice['X-API-Key'])}",
            "kind": "fact",
        }

    fake_ollama.script(content="Green tea it is.")
    second = _chat(chat_client, alice, "keeper", "What should I drink?")
    assert second["session_id"] != first["session_id"], "a new session"
    assert f"- {FACT}" in "\n".join(m["content"] for m in last_chat_messages(fake_ollama))

    fake_ollama.script(content="Anything you like.")
    _chat(chat_client, bob, "keeper", "What should I drink?")
    assert "green tea" not in str(last_chat_messages(fake_ollama)).lower()


def test_an_agent_without_remember_in_its_tools_cannot_store_memories(
    chat_client: FlaskClient, make_api_key: MakeApiKey, fake_ollama: Any
) -> None:
    headers = make_api_key(["agents:read"])
    fake_ollama.script(tool_calls=[{"name": "remember", "arguments": {"text": FACT}}])
    fake_ollama.script(content="Sure.")
    [call] = _chat(chat_client, headers, "forgetful", "Remember I like tea.")["tool_calls"]
    assert call["error"] == "tool 'remember' is not allowed for agent 'forgetful'"
    with session_scope() as session:
        assert store.get_collection_or_none(session, "agent-memory") is None


def _keeper(**overrides: Any) -> AgentDef:
    base: dict[str, Any] = {
        "name": "keeper",
        "version": 1,
        "model": "llama3.2",
        "system_prompt": "Remember.",
        "tools": ("remember",),
        "max_tool_rounds": 2,
    }
    return AgentDef(**{**base, **overrides})


@pytest.mark.parametrize(
    ("context", "arguments", "error"),
    [
        ({"agent": "keeper"}, {"text": FACT}, "no user to remember for"),
        ({"agent": "keeper", "user": "alice"}, {"text": ""}, "invalid arguments for remember"),
        ({"agent": "keeper", "user": "alice"}, {"text": "x" * 2001}, "invalid arguments"),
        ({"agent": "keeper", "user": "alice"}, {"text": FACT, "kind": "gossip"}, "kind"),
        ({"agent": "keeper", "user": "alice"}, {"text": "   "}, "could not remember"),
        ({"agent": "keeper", "user": "alice"}, {"text": "a\x00b"}, "NUL"),
    ],
)
def test_a_turn_the_tool_cannot_serve_gets_a_tool_error_not_a_crash(
    settings: Settings,
    fake_ollama: Any,
    context: dict[str, Any],
    arguments: dict[str, Any],
    error: str,
) -> None:
    fake_ollama.script(tool_calls=[{"name": "remember", "arguments": arguments}])
    fake_ollama.script(content="Fine.")
    router = default_router(settings.replace(ollama_base_url=fake_ollama.url))
    tools = ToolContext(settings=settings, **context)
    result = run_agent(_keeper(), "Remember this.", router=router, context=tools)
    assert result.content == "Fine."
    [call] = result.tool_calls
    assert error in call["error"] and "result" not in call
    with session_scope() as session:
        assert store.get_collection_or_none(session, "agent-memory") is None

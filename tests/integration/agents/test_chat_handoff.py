"""The API -> `llm` worker hand-off of a chat turn: the worker runs the agent version the API
resolved, a new session reads no history, and the publisher waits on no Celery result. Real
API, broker, worker, PostgreSQL and Redis; a fake Ollama."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from agent33.agents.chat import ChatTurn, chat_turn
from agent33.agents.sessions import buffer_key, redis_client, wait_result
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import AgentDefinition
from tests.integration.agents.chat_support import chat_client, last_chat_messages, save_agents
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


def _agent(name: str, version: int, prompt: str) -> dict[str, Any]:
    return {"name": name, "version": version, "model": "llama3.2", "system_prompt": prompt}


def _row_id(name: str, version: int) -> str:
    with session_scope() as session:
        row = session.query(AgentDefinition).filter_by(name=name, version=version).one()
        return str(row.id)


@pytest.fixture
def own(settings: Settings, fake_ollama: Any) -> Settings:
    return settings.replace(ollama_base_url=fake_ollama.url)


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """Headers of the `agent33.llm.chat` messages this process publishes."""
    seen_headers: list[dict[str, Any]] = []

    def seen(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if sender == "agent33.llm.chat" and headers is not None:
            seen_headers.append(headers)

    signals.before_task_publish.connect(seen, weak=False)
    try:
        yield seen_headers
    finally:
        signals.before_task_publish.disconnect(seen)


def test_the_worker_runs_the_version_the_api_resolved(own: Settings, fake_ollama: Any) -> None:
    """A newer version stored after the API resolved v1 does not change the turn."""
    name = f"versioned-{uuid.uuid4().hex[:6]}"
    save_agents([_agent(name, 1, "You are version one.")])
    v1 = _row_id(name, 1)
    save_agents([_agent(name, 2, "You are version two.")])
    turn = ChatTurn(name, "hi", str(uuid.uuid4()), uuid.uuid4().hex, agent_id=v1)
    result = chat_turn(own, turn)
    assert "error" not in result, result
    assert last_chat_messages(fake_ollama)[0]["content"] == "You are version one."
    assert wait_result(own, turn.request_id, 5) == result
    # Without the hint (a message from an older API) the latest version answers.
    chat_turn(own, ChatTurn(name, "hi", str(uuid.uuid4()), uuid.uuid4().hex))
    assert last_chat_messages(fake_ollama)[0]["content"] == "You are version two."


def test_a_deleted_version_is_an_error_result_not_a_crash(own: Settings) -> None:
    turn = ChatTurn("gone", "hi", str(uuid.uuid4()), uuid.uuid4().hex, agent_id=str(uuid.uuid4()))
    result = chat_turn(own, turn)
    assert result["error"]["code"] == "not_found" and result["error"]["status"] == 404
    assert wait_result(own, turn.request_id, 5) == result


def test_a_new_session_reads_no_history_and_its_turn_is_buffered(
    own: Settings, fake_ollama: Any
) -> None:
    """`new_session` skips the history lookup; a stale buffer under that id would show it."""
    name = f"fresh-{uuid.uuid4().hex[:6]}"
    save_agents([_agent(name, 1, "Be brief.")])
    sid = uuid.uuid4()
    client = redis_client(own)
    client.rpush(buffer_key(sid), '{"role": "user", "content": "stale"}')
    chat_turn(own, ChatTurn(name, "hello", str(sid), uuid.uuid4().hex, new_session=True))
    assert [m["content"] for m in last_chat_messages(fake_ollama)[1:]] == ["hello"]
    buffered = [json.loads(item)["content"] for item in client.lrange(buffer_key(sid), 0, -1)]
    assert buffered == ["stale", "hello", "echo: hello"]
    # The next turn of the session (not new) reads the buffer: the stored turn is in it.
    chat_turn(own, ChatTurn(name, "again", str(sid), uuid.uuid4().hex))
    contents = [m["content"] for m in last_chat_messages(fake_ollama)[1:]]
    assert contents[-3:] == ["hello", "echo: hello", "again"]


def test_the_api_publishes_chats_without_a_result_subscription(
    own: Settings, make_api_key: MakeApiKey, published: list[dict[str, Any]]
) -> None:
    """The answer comes back on the request's own list; a Celery result the publisher waits
    for would cost a SUBSCRIBE and an UNSUBSCRIBE per chat on the API's one pub/sub
    connection. The message says so on the wire (the worker stores no result either)."""
    name = f"nosub-{uuid.uuid4().hex[:6]}"
    save_agents([_agent(name, 1, "Be brief.")])
    headers = make_api_key(["agents:read"])
    with chat_client(own, timeout=15) as client:
        for _ in range(2):
            body = {"message": "hi", "agent": name}
            response = client.post("/api/v1/chat", json=body, headers=headers)
            assert response.status_code == 200, response.json
    assert [h["ignore_result"] for h in published] == [True, True]

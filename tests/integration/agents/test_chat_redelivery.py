"""A chat turn delivered again (its worker died after the commit, before the ack) is recorded
once, answers the waiting request with the recorded answer and does not ask the model again;
past the redelivery budget, or after the API gave up, it answers nothing new.

`chat_turn` runs here on real PostgreSQL and Redis, as the worker runs it on a redelivery."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent33.agents.chat import ChatTurn, chat_turn
from agent33.agents.sessions import wait_result
from agent33.agents.turns import abandon
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChatMessage
from tests.integration.agents.chat_support import save_agents

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("committed_db")]


@pytest.fixture
def own(settings: Settings, fake_ollama: Any) -> Settings:
    return settings.replace(ollama_base_url=fake_ollama.url, chat_redeliveries=1)


def _turn() -> ChatTurn:
    name = f"again-{uuid.uuid4().hex[:6]}"
    save_agents([{"name": name, "model": "llama3.2", "system_prompt": "Be brief."}])
    return ChatTurn(name, "hello?", str(uuid.uuid4()), uuid.uuid4().hex, new_session=True)


def _chats(fake: Any) -> int:
    return sum(1 for path, _ in fake.requests if path == "/api/chat")


def _stored(turn: ChatTurn) -> list[tuple[str, str]]:
    with session_scope() as session:
        rows = session.query(ChatMessage).filter_by(session_id=uuid.UUID(turn.session_id))
        return [(row.role, row.content) for row in rows.order_by(ChatMessage.id)]


def test_a_turn_redelivered_after_its_commit_is_recorded_once_and_answered_again(
    own: Settings, fake_ollama: Any
) -> None:
    fake_ollama.script(content="once")
    turn = _turn()
    first = chat_turn(own, turn)
    assert wait_result(own, turn.request_id, 5) == first
    again = chat_turn(own, turn, redelivered=True)
    assert again["answer"] == "once"
    assert wait_result(own, turn.request_id, 5) == again
    assert _chats(fake_ollama) == 1
    assert _stored(turn) == [("user", "hello?"), ("assistant", "once")]


def test_a_turn_past_its_budget_answers_worker_lost(own: Settings, fake_ollama: Any) -> None:
    turn = _turn()
    chat_turn(own, turn, redelivered=True)  # the first redelivery runs (budget 1)
    wait_result(own, turn.request_id, 5)
    spent = chat_turn(own, turn, redelivered=True)
    assert spent["error"]["code"] == "worker_lost" and spent["error"]["status"] == 503
    assert wait_result(own, turn.request_id, 5) == spent
    assert _chats(fake_ollama) == 1


def test_a_turn_the_api_gave_up_on_is_not_answered(own: Settings, fake_ollama: Any) -> None:
    turn = _turn()
    abandon(own, turn.request_id)
    result = chat_turn(own, turn, redelivered=True)
    assert result["error"]["code"] == "abandoned"
    assert _chats(fake_ollama) == 0
    assert _stored(turn) == []
    assert wait_result(own, turn.request_id, 1) is None

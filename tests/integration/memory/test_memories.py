"""Long-term memories per agent and per user, on the real store and the local model."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models.memory import MemoryDocument
from agent33.errors import ValidationFailed
from agent33.memory import store
from agent33.memory.memories import DEFAULT_COLLECTION, recall, remember

QUERY = "Which drink should I offer?"


def _texts(hits: list[store.Hit]) -> list[str]:
    return [hit.content for hit in hits]


def test_a_users_fact_is_recalled_for_them_and_never_for_another_user(
    db_session: Session, settings: Settings
) -> None:
    assert store.get_collection_or_none(db_session, DEFAULT_COLLECTION) is None
    assert recall(db_session, settings, agent="helper", user="alice", query=QUERY) == []
    remember(db_session, settings, agent="helper", user="alice", text="Alice drinks green tea.")
    remember(db_session, settings, agent="helper", user="alice", text="Alice lives in Lyon.")
    collection = store.get_collection_or_none(db_session, DEFAULT_COLLECTION)
    assert collection is not None, "created on first use"

    alice = recall(db_session, settings, agent="helper", user="alice", query=QUERY, top_k=1)
    assert _texts(alice) == ["Alice drinks green tea."]
    assert alice[0].metadata == {"agent": "helper", "user": "alice", "kind": "fact"}
    for user, agent in (("bob", "helper"), ("alice", "other-agent"), ("ALICE", "helper")):
        assert recall(db_session, settings, agent=agent, user=user, query=QUERY, top_k=10) == []


def test_the_same_sentence_is_kept_per_user_and_updated_not_duplicated(
    db_session: Session, settings: Settings
) -> None:
    text = "Prefers answers in French."
    first = remember(db_session, settings, agent="helper", user="alice", text=text)
    again = remember(db_session, settings, agent="helper", user="alice", text=text)
    bob = remember(db_session, settings, agent="helper", user="bob", text=text, kind="summary")
    assert first == again and bob != first
    count = db_session.scalar(select(func.count()).select_from(MemoryDocument))
    assert count == 2
    hits = recall(db_session, settings, agent="helper", user="bob", query="language", top_k=5)
    assert _texts(hits) == [text] and hits[0].metadata["kind"] == "summary"
    facts = recall(db_session, settings, agent="helper", user="bob", query="language", kind="fact")
    assert facts == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"user": " "}, "user"),
        ({"text": ""}, "text"),
        ({"kind": "secret"}, "kind"),
        ({"agent": ""}, "agent"),
    ],
)
def test_invalid_memories_are_refused_naming_the_field(
    db_session: Session, settings: Settings, fields: dict[str, str], problem: str
) -> None:
    arguments = {"agent": "helper", "user": "alice", "text": "x", "kind": "fact", **fields}
    with pytest.raises(ValidationFailed) as info:
        remember(db_session, settings, **arguments)
    assert problem in info.value.fields

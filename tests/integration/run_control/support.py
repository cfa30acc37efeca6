"""Shared by the record/replay and budget tests: agents, workflows and the worker's settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import RecordedCall, RunBudget
from agent33.definitions.agents import parse_agent, save_agent
from tasks.app import settings_swapped


def store_agent(**fields: Any) -> None:
    document = {
        "name": "counter",
        "version": 1,
        "model": "llama3.2",
        "system_prompt": "Answer briefly.",
        "max_tokens": 8,
        **fields,
    }
    with session_scope() as session:
        save_agent(session=session, agent=parse_agent(document), document=document)


@contextmanager
def worker_on(settings: Settings, model_url: str, **changes: Any) -> Iterator[Settings]:
    """The in-process worker talks to `model_url` (a fake server, or a closed port)."""
    with settings_swapped(settings.replace(ollama_base_url=model_url, **changes)) as own:
        yield own


def calls_of(run_id: uuid.UUID) -> list[RecordedCall]:
    with session_scope() as session:
        rows = session.scalars(
            select(RecordedCall)
            .where(RecordedCall.run_id == run_id)
            .order_by(RecordedCall.step_id, RecordedCall.sequence)
        )
        return list(rows)


def budget_of(run_id: uuid.UUID) -> RunBudget | None:
    with session_scope() as session:
        return session.get(RunBudget, run_id)


def chats(fake: Any) -> int:
    return sum(1 for path, _ in fake.requests if path == "/api/chat")

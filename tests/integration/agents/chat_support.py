"""Shared by the chat tests: agents saved for the worker, an API client pointed at this test's
fake model server, and readers for what the fake received and what the API streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import parse_agent, save_agent
from tasks.app import swap_settings
from web import create_app


def save_agents(documents: Sequence[Mapping[str, Any]]) -> None:
    """Committed, so the in-process worker finds them."""
    with session_scope() as session:
        for document in documents:
            save_agent(session=session, agent=parse_agent(dict(document)), document=dict(document))


@contextmanager
def swapped(own: Settings) -> Iterator[Settings]:
    """The in-process worker runs with `own` settings for the block."""
    previous = swap_settings(own)
    try:
        yield own
    finally:
        if previous is not None:
            swap_settings(previous)


@contextmanager
def chat_client(own: Settings, *, timeout: float = 30) -> Iterator[FlaskClient]:
    """An API client and a worker that both use `own` settings (e.g. a fake's URL)."""
    with swapped(own):
        app = create_app(own)
        app.config["AGENT33_CHAT_TIMEOUT"] = timeout
        yield app.test_client()


def last_chat_messages(fake: Any) -> list[dict[str, Any]]:
    """The messages of the last `/api/chat` request the fake Ollama received."""
    bodies = [body for path, body in fake.requests if path == "/api/chat"]
    messages: list[dict[str, Any]] = bodies[-1]["messages"]
    return messages


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events body."""
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events

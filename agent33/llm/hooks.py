"""Hooks around the model and tool calls of a workflow step: where record, replay and budgets
attach.

The calls go out from low layers (the router here, `agent33.tools.governance` above it) while
what decides about them (the run's recording, its budget) lives in the engine, which may not be
imported from here. So the engine installs a `CallHooks` in a context variable for the duration
of a step, and the router and governance ask `active()`; with none installed (chat, library
use) they call straight through. Tools use this module too because `agent33.tools` sits above
`agent33.llm` in the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from agent33.llm.types import ChatRequest, ChatResponse


class CallHooks(Protocol):
    def model(self, request: ChatRequest, send: Callable[[], ChatResponse]) -> ChatResponse:
        """One model call as the agent asked it (fallbacks inside `send`): answer it from a
        recording, or call `send` and record what came back."""

    def attempt(
        self, model: str, request: ChatRequest, send: Callable[[], ChatResponse]
    ) -> ChatResponse:
        """One request to one provider (`model` is `provider/name`): reserve before, settle
        after. Every fallback and retry is an attempt of its own."""

    def tool(self, name: str, arguments: Any, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """One tool call under governance: answer it from a recording, or `run` and record."""


_current: ContextVar[CallHooks | None] = ContextVar("agent33_call_hooks", default=None)


def active() -> CallHooks | None:
    return _current.get()


@contextmanager
def installed(hooks: CallHooks | None) -> Iterator[None]:
    """`hooks` answer the calls made in this context (and threads that copy it)."""
    token = _current.set(hooks)
    try:
        yield
    finally:
        _current.reset(token)

"""Step actions: one module per kind, registered by name."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent33.config import Settings
from agent33.errors import Agent33Error, NotFound


@dataclass(frozen=True)
class ActionContext:
    """What an action sees: its rendered params and where it runs."""

    run_id: str
    step_id: str
    attempt: int
    params: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    context: dict[str, Any] = field(default_factory=dict)
    previous_output: Any = None
    # Set by the runner when the step timed out: an action still running in its thread stops.
    stop: threading.Event = field(default_factory=threading.Event, compare=False)


class ActionFailed(Agent33Error):
    """An action failed for a reason worth retrying or reporting; `retryable` guides retries."""

    code = "action_failed"

    def __init__(self, message: str, *, retryable: bool = False, details: Any = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.details = details


Action = Callable[[ActionContext], Any]
_REGISTRY: dict[str, Action] = {}
_INLINE: set[str] = set()
_NOT_REPEAT_SAFE: set[str] = set()


def register(
    name: str, *, inline: bool = False, repeat_safe: bool = True
) -> Callable[[Action], Action]:
    """`inline`: the action touches nothing outside the database (pure data work), so it may run
    inside the transaction that claims the step, saving a commit per step.

    `repeat_safe=False`: running it twice may do harm no receiver can undo (a command), so a
    lost attempt is run again only when its worker is known dead, never on a guess."""

    def decorate(func: Action) -> Action:
        _REGISTRY[name] = func
        if inline:
            _INLINE.add(name)
        if not repeat_safe:
            _NOT_REPEAT_SAFE.add(name)
        return func

    return decorate


def is_repeat_safe(name: str) -> bool:
    _load_builtin()
    return name not in _NOT_REPEAT_SAFE


def is_inline(name: str) -> bool:
    _load_builtin()
    return name in _INLINE


def get_action(name: str) -> Action:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFound(
            f"unknown action {name!r}; known: {', '.join(sorted(_REGISTRY))}",
            fields={"action": [f"unknown action {name!r}"]},
        ) from None


def known_actions() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from agent33.engine.actions import (  # noqa: F401
        agent,
        command,
        flow,
        http,
        tool,
        transform,
        validate,
    )

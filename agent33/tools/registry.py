"""The tool registry: name -> (spec the model sees, function that runs it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from agent33.config import Settings
from agent33.errors import Agent33Error
from agent33.llm.types import ToolSpec


class ToolError(Agent33Error):
    """A tool refused or failed; the message is fed back to the model as the tool's result."""

    code = "tool_error"


@dataclass(frozen=True)
class ToolContext:
    """Who and where a tool runs for: the run step (workflows), the agent and the user whose
    turn it is (`remember` stores for them; None when the turn has no user), and the agent's
    long-term memory collection (None: the default one)."""

    settings: Settings = field(default_factory=Settings)
    run_id: str | None = None
    step_id: str | None = None
    agent: str | None = None
    user: str | None = None
    memory_collection: str | None = None


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    function: Callable[[dict[str, Any], ToolContext], Any]

    def __call__(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Validate the model's arguments against the tool's schema, then run it."""
        validator = Draft202012Validator(dict(self.spec.parameters), registry=Registry())
        errors = sorted(validator.iter_errors(arguments), key=str)
        if errors:
            path = ".".join(str(p) for p in errors[0].absolute_path) or "(arguments)"
            raise ToolError(f"invalid arguments for {self.spec.name}: {path}: {errors[0].message}")
        return self.function(arguments, context)


_TOOLS: dict[str, Tool] = {}


def register_tool(tool: Tool) -> Tool:
    _TOOLS[tool.spec.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    _load_builtin()
    try:
        return _TOOLS[name]
    except KeyError:
        raise ToolError(f"unknown tool {name!r} (known: {', '.join(known_tools())})") from None


def known_tools() -> list[str]:
    _load_builtin()
    return sorted(_TOOLS)


def _load_builtin() -> None:
    from agent33.tools import browser, builtin, files, memory  # noqa: F401

"""The tool registry: name -> (spec the model sees, function that runs it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from agent33.config import Settings
from agent33.errors import Agent33Error, DefinitionError
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


def _all(settings: Settings | None) -> dict[str, Tool]:
    """Builtins, plus the HTTP tools of `settings.definitions_dir/tools/` when given (a file
    may not take a builtin's name: which one runs would depend on load order)."""
    _load_builtin()
    if settings is None:
        return _TOOLS
    from agent33.tools.external import load_external

    external = load_external(settings.definitions_dir)
    clash = sorted(set(external) & set(_TOOLS))
    if clash:
        raise DefinitionError(
            f"tool definition(s) {', '.join(clash)} take the name of a builtin tool",
            fields={"name": [f"{name!r} is a builtin tool" for name in clash]},
        )
    return {**_TOOLS, **external}


def get_tool(name: str, settings: Settings | None = None) -> Tool:
    """A tool by name (`settings`: also those defined in its definitions directory)."""
    try:
        tools = _all(settings)
    except DefinitionError as exc:
        raise ToolError(f"the tool definitions cannot be loaded: {exc.message}") from None
    try:
        return tools[name]
    except KeyError:
        raise ToolError(f"unknown tool {name!r} (known: {', '.join(sorted(tools))})") from None


def known_tools(settings: Settings | None = None) -> list[str]:
    """Every tool name (builtins, and with `settings` the defined ones).

    Raises:
        DefinitionError: a file in `definitions/tools/` is invalid.
    """
    return sorted(_all(settings))


def _load_builtin() -> None:
    from agent33.tools import browser, builtin, files, memory, shell, web  # noqa: F401

"""`tool`: call one tool directly from a workflow step, `with: {name: ..., arguments: {...}}`.

The call goes through the same governance as an agent's (`agent33.tools.governance`: schema,
timeout, output cap, audit row); any tool may be named, since the workflow's author chose it.
A refusal or failure fails the step with the tool's message (not retried: the same arguments
would fail again); the output is `{tool, result, duration_ms}`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.tools import ToolContext
from agent33.tools.governance import call_tool

KNOWN = ("name", "arguments")


def problems(params: Mapping[str, Any], tools: Collection[str] | None) -> dict[str, list[str]]:
    """What is wrong with a step's `with:` before it runs, by field (`with.name`, ...);
    `tools`: the known tool names (None: not checked). A templated name is checked at run."""
    found: dict[str, list[str]] = {}
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        found["with"] = [f"unknown parameter(s) {', '.join(unknown)} (known: name, arguments)"]
    name = params.get("name")
    if not isinstance(name, str) or not name:
        found["with.name"] = ["the tool to call (a tool name) is required"]
    elif tools is not None and "{{" not in name and name not in tools:
        found["with.name"] = [f"unknown tool {name!r} (known: {', '.join(sorted(tools))})"]
    arguments = params.get("arguments", {})
    if not isinstance(arguments, Mapping) and not (
        isinstance(arguments, str) and "{{" in arguments
    ):
        found["with.arguments"] = ["must be a mapping of argument names to values"]
    return found


@register("tool")
def tool(context: ActionContext) -> Any:
    wrong = problems(context.params, None)
    if wrong:
        field, messages = next(iter(wrong.items()))
        raise ActionFailed(f"tool: {field}: {'; '.join(messages)}")
    name = str(context.params["name"])
    arguments = context.params.get("arguments", {})
    record = call_tool(
        name,
        dict(arguments) if isinstance(arguments, Mapping) else arguments,
        ToolContext(settings=context.settings, run_id=context.run_id, step_id=context.step_id),
    )
    if "error" in record:
        raise ActionFailed(f"tool {name!r}: {record['error']}", details=record)
    return {"tool": name, "result": record["result"], "duration_ms": record["duration_ms"]}

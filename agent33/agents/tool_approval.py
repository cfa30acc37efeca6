"""Tool calls that wait for a person: the parked conversation and the decision that resumes it.

A tool an agent lists as `{name, approval: required}` is not run when the model calls it: the
turn stops with `ToolApprovalRequired`, carrying everything needed to continue later (the
messages so far, the calls of that model response still to run, usage so far) as plain JSON,
so a workflow step can park with it (no worker held) and a later execution resumes it with the
person's decision: approved runs the tool, rejected answers the model with a refusal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent33.llm.types import Message, ToolCall


class ToolApprovalRequired(Exception):  # noqa: N818 - a signal to park, not a failure
    """The model called a tool that needs approval; `state` resumes the turn."""

    def __init__(self, call: ToolCall, state: dict[str, Any]) -> None:
        super().__init__(f"tool {call.name!r} awaits approval")
        self.call = call
        self.state = state


def call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def call_of(data: Mapping[str, Any]) -> ToolCall:
    return ToolCall(id=str(data["id"]), name=str(data["name"]), arguments=dict(data["arguments"]))


def message_json(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [call_json(c) for c in message.tool_calls] if message.tool_calls else None,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def message_of(data: Mapping[str, Any]) -> Message:
    calls = data.get("tool_calls")
    return Message(
        role=data["role"],
        content=str(data["content"]),
        tool_calls=tuple(call_of(c) for c in calls) if calls else None,
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )


def refusal(call: ToolCall, decision: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tool result the model gets for a rejected call, and the record of it."""
    reason = f"the call of tool {call.name!r} was rejected by {decision.get('by') or 'a person'}"
    if decision.get("comment"):
        reason += f": {decision['comment']}"
    record = {**call_json(call), "error": reason, "approval": dict(decision)}
    return json.dumps({"error": reason}), record


def unattended(call: ToolCall) -> tuple[str, dict[str, Any]]:
    """Where nobody can approve (a chat turn), an approval-required tool is refused."""
    reason = (
        f"tool {call.name!r} needs a person's approval, which only a workflow step can wait for"
    )
    return json.dumps({"error": reason}), {**call_json(call), "error": reason}

"""`remember`: the agent stores a fact (or a summary) about the user it is talking to.

The memory goes to the agent's long-term collection (`memory.long_term.collection`) under the
agent and the user of the turn (`ToolContext.agent` / `.user`, filled by the chat task and the
`invoke_agent` action), in its own transaction: a later turn with `memory.long_term.enabled`
recalls it for that user only. Like every tool it is usable only by agents that list it in
`tools`. A turn without a user (a run nobody started) gets a tool error, never a crash.
"""

from __future__ import annotations

from typing import Any

from agent33.db import session_scope
from agent33.errors import Agent33Error
from agent33.llm.types import ToolSpec
from agent33.memory import memories
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool


def remember(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    if not context.user:
        raise ToolError("no user to remember for")
    if not context.agent:
        raise ToolError("no agent to remember for")
    text = str(arguments["text"])
    kind = str(arguments.get("kind") or "fact")
    try:
        with session_scope() as session:
            document_id = memories.remember(
                session,
                context.settings,
                agent=context.agent,
                user=context.user,
                text=text,
                kind=kind,
                collection=context.memory_collection or memories.DEFAULT_COLLECTION,
            )
    except Agent33Error as exc:  # blank or unstorable text, an unusable embedding model, ...
        raise ToolError(f"could not remember: {exc.message}") from None
    return {"remembered": True, "id": str(document_id)}


register_tool(
    Tool(
        ToolSpec(
            "remember",
            "Remember a fact about the user (or a summary of the conversation) for later "
            "conversations with them.",
            {
                "type": "object",
                "required": ["text"],
                "additionalProperties": False,
                "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": memories.MAX_SPOKEN},
                    "kind": {"type": "string", "enum": list(memories.KINDS), "default": "fact"},
                },
            },
        ),
        remember,
    )
)

"""Tools agents may call: a registry of typed tools and the governance that limits them."""

from agent33.tools.registry import (
    Tool,
    ToolContext,
    ToolError,
    get_tool,
    known_tools,
    register_tool,
)

__all__ = ["Tool", "ToolContext", "ToolError", "get_tool", "known_tools", "register_tool"]

"""`read_file` / `write_file` tools, confined to AGENT33_FILE_ROOTS.

The path comes from the model, which may be steered by injected text, so every path goes
through `agent33.security.paths` (resolved, checked against the roots, opened with O_NOFOLLOW);
a refusal is a tool error the model sees, never an exception that fails the step. A path
outside the roots gets one answer whether it exists or not (the model cannot probe the disk),
and a file with several hard links is refused (its other name may be outside the roots).
"""

from __future__ import annotations

from typing import Any

from agent33.llm.types import ToolSpec
from agent33.security.paths import UnsafePath, read_bytes, write_bytes
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

MAX_FILE_BYTES = 1024 * 1024


def read_file(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    path = str(arguments["path"])
    try:
        data = read_bytes(context.settings.file_roots, path, MAX_FILE_BYTES)
    except UnsafePath as exc:
        raise ToolError(exc.message) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path!r} is not UTF-8 text") from None
    return {"path": path, "content": text, "bytes": len(data)}


def write_file(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    path = str(arguments["path"])
    data = str(arguments["content"]).encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(f"content is larger than {MAX_FILE_BYTES} bytes")
    try:
        write_bytes(context.settings.file_roots, path, data)
    except UnsafePath as exc:
        raise ToolError(exc.message) from None
    return {"path": path, "bytes": len(data)}


_PATH = {"type": "string", "minLength": 1, "maxLength": 4096}

register_tool(
    Tool(
        ToolSpec(
            "read_file",
            "Read a UTF-8 text file (at most 1 MiB) under the configured file roots.",
            {
                "type": "object",
                "required": ["path"],
                "additionalProperties": False,
                "properties": {"path": _PATH},
            },
        ),
        read_file,
    )
)
register_tool(
    Tool(
        ToolSpec(
            "write_file",
            "Write a UTF-8 text file (at most 1 MiB) under the configured file roots.",
            {
                "type": "object",
                "required": ["path", "content"],
                "additionalProperties": False,
                "properties": {"path": _PATH, "content": {"type": "string"}},
            },
        ),
        write_file,
    )
)

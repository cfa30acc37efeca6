"""`read_file`, `write_file`, `list_files` and `delete_file` tools, confined to AGENT33_FILE_ROOTS.

The path comes from the model, which may be steered by injected text, so every path goes
through `agent33.security.paths` (resolved, checked against the roots, opened with O_NOFOLLOW);
a refusal is a tool error the model sees, never an exception that fails the step. A path
outside the roots gets one answer whether it exists or not (the model cannot probe the disk),
and a file with several hard links is refused (its other name may be outside the roots).
Listing and deleting open the directory itself with O_NOFOLLOW and act relative to its
descriptor, so a symlink swapped in after the check cannot redirect them; a listed symlink is
shown as one, never followed, and `delete_file` removes a link, never what it points to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from agent33.llm.types import ToolSpec
from agent33.security.paths import UnsafePath, open_safely, read_bytes, safe_path, write_bytes
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 1000


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


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "other"


def list_files(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Entries of a directory (not recursive), sorted by name, at most MAX_ENTRIES."""
    path = str(arguments.get("path") or ".")
    roots = context.settings.file_roots
    try:
        fd = open_safely(
            roots, safe_path(roots, path, must_exist=True), os.O_RDONLY | os.O_DIRECTORY
        )
    except UnsafePath as exc:
        raise ToolError(exc.message) from None
    try:
        names = sorted(os.listdir(fd))
        entries = []
        for name in names[:MAX_ENTRIES]:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            kind = _kind(info.st_mode)
            entry: dict[str, Any] = {"name": name, "type": kind}
            if kind == "file":
                entry["bytes"] = info.st_size
            entries.append(entry)
    except OSError as exc:
        raise ToolError(f"cannot list {path!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return {"path": path, "entries": entries, "truncated": len(names) > MAX_ENTRIES}


def delete_file(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Delete a file, a symlink (not its target) or an empty directory under the roots."""
    path = str(arguments["path"])
    roots = context.settings.file_roots
    name = Path(path).name
    if name in ("", ".", ".."):
        raise ToolError(f"{path!r} does not name a file")
    try:
        target = safe_path(roots, path, must_exist=True)  # refuses links leading out
        if any(target == safe_path(roots, str(root)) for root in roots):
            raise ToolError(f"{path!r} is a file root; it cannot be deleted")
        base = Path(path) if Path(path).is_absolute() else Path(roots[0]) / path
        parent = safe_path(roots, str(base.parent), must_exist=True)
        fd = open_safely(roots, parent, os.O_RDONLY | os.O_DIRECTORY)
    except UnsafePath as exc:
        raise ToolError(exc.message) from None
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    except OSError as exc:
        raise ToolError(f"cannot delete {path!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return {"path": path, "deleted": _kind(info.st_mode)}


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
register_tool(
    Tool(
        ToolSpec(
            "list_files",
            "List a directory under the configured file roots (names, types, sizes).",
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"path": {**_PATH, "description": "default: the first root"}},
            },
        ),
        list_files,
    )
)
register_tool(
    Tool(
        ToolSpec(
            "delete_file",
            "Delete a file, a symlink or an empty directory under the configured file roots.",
            {
                "type": "object",
                "required": ["path"],
                "additionalProperties": False,
                "properties": {"path": _PATH},
            },
        ),
        delete_file,
    )
)

"""Every tool call, from an agent's turn or an `action: tool` step, goes through `call_tool`.

The rules are the same for both callers: the allowlist (an agent's `tools`), the argument
schema, a wall-clock limit (AGENT33_TOOL_TIMEOUT), a cap on the result's size
(AGENT33_TOOL_OUTPUT_LIMIT) and an audit row. Nothing a tool or a model does raises out of
here: a refusal or a failure is the call's `error`, which the model reads and can correct, or
which a step records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

import structlog

from agent33.config import Settings
from agent33.llm import hooks
from agent33.llm.types import ToolSpec
from agent33.observability import tracing
from agent33.security.audit import Outcome, record_now
from agent33.tools.registry import ToolContext, ToolError, get_tool

log = structlog.get_logger(__name__)

GRACE = 5.0  # seconds past the limit before the call is abandoned (the tool's own limits first)
AUDIT_ACTION = "tool.call"


def tool_specs(names: Collection[str], settings: Settings) -> list[ToolSpec]:
    """What the model is offered: the named tools that exist (a removed one is left out; if
    the model still asks for it, the call says it is unknown)."""
    specs = []
    for name in names:
        try:
            specs.append(get_tool(name, settings).spec)
        except ToolError as exc:
            log.warning("tool.unavailable", tool=name, reason=exc.message)
    return specs


def capped(result: Any, limit: int) -> Any:
    """The result, or a marked preview of its JSON when that is larger than `limit` bytes."""
    text = json.dumps(result, default=str, ensure_ascii=False)
    size = len(text.encode())
    if size <= limit:
        return result
    preview = text.encode()[: max(limit - 200, 0)].decode("utf-8", "ignore")
    return {"truncated": True, "bytes": size, "limit": limit, "preview": preview}


def _bounded(function: Callable[[], Any], seconds: float) -> Any:
    """Run `function` with a deadline; past it the call fails and its thread is abandoned
    (tools bound their own I/O, so this only catches a tool that forgot to)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="agent33-tool", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise ToolError(f"timed out after {seconds:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def call_tool(
    name: str,
    arguments: Any,
    context: ToolContext,
    *,
    allowed: Collection[str] | None = None,
    agent: str | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    """`{id?, name, arguments, result | error, duration_ms}`; `allowed` None: any known tool,
    else the tools of `agent` (named in the refusal; default: the context's agent)."""
    call = partial(_call_tool, name, arguments, context, allowed, agent, call_id)
    installed = hooks.active()
    return call() if installed is None else installed.tool(name, arguments, call)


def _call_tool(
    name: str,
    arguments: Any,
    context: ToolContext,
    allowed: Collection[str] | None,
    agent: str | None,
    call_id: str | None,
) -> dict[str, Any]:
    started = time.monotonic()
    record: dict[str, Any] = {"name": name, "arguments": arguments}
    if call_id is not None:
        record = {"id": call_id, **record}
    outcome: Outcome = "ok"
    settings = context.settings
    if allowed is not None and name not in allowed:
        outcome = "denied"
        record["error"] = f"tool {name!r} is not allowed for agent {agent or context.agent!r}"
    elif not isinstance(arguments, dict):
        outcome = "denied"
        record["error"] = f"the arguments of {name!r} must be an object"
    else:
        with tracing.span(f"tool {name}", {"agent33.tool": name}) as span:
            try:
                tool = get_tool(name, settings)
                result = _bounded(lambda: tool(arguments, context), settings.tool_timeout + GRACE)
                record["result"] = capped(result, settings.tool_output_limit)
            except ToolError as exc:
                outcome = "failed"
                record["error"] = exc.message
                if span is not None:
                    span.set_attribute("agent33.error", exc.message[:500])
    record["duration_ms"] = round((time.monotonic() - started) * 1000)
    _audit(record, outcome, context)
    return record


def _audit(record: dict[str, Any], outcome: Outcome, context: ToolContext) -> None:
    """One row per call; the arguments are not stored (only their names), the error is."""
    arguments = record["arguments"]
    details = {
        "run_id": context.run_id,
        "step_id": context.step_id,
        "agent": context.agent,
        "arguments": sorted(arguments) if isinstance(arguments, dict) else None,
        "duration_ms": record["duration_ms"],
        "error": record.get("error"),
    }
    try:
        record_now(
            action=AUDIT_ACTION,
            outcome=outcome,
            principal=context.user,
            target=record["name"],
            details={k: v for k, v in details.items() if v is not None},
        )
    except Exception as exc:  # noqa: BLE001 - no database configured (library use): log it
        log.warning("tool.audit_failed", tool=record["name"], error=str(exc))

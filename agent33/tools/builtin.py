"""Built-in tools. Those that reach outside go through the same allowlists as the actions."""

from __future__ import annotations

import ast
import datetime as dt
import operator
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent33.llm.types import ToolSpec
from agent33.security.outbound import OutboundFailed, OutboundRequest, send
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
MAX_EXPONENT = 100
HTTP_GET_TIMEOUT = 15.0


def _evaluate(node: ast.AST) -> float:
    """Arithmetic only: numbers and + - * / // % ** (bounded); anything else is refused."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large")
        return float(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.operand)))
    raise ToolError("only numbers and + - * / // % ** are allowed")


def calculator(arguments: dict[str, Any], _context: ToolContext) -> dict[str, Any]:
    expression = str(arguments["expression"])
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    return {"expression": expression, "result": int(value) if value.is_integer() else value}


def current_time(arguments: dict[str, Any], _context: ToolContext) -> dict[str, Any]:
    zone = str(arguments.get("timezone") or "UTC")
    try:
        now = dt.datetime.now(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {zone!r}") from None
    return {"timezone": zone, "iso": now.isoformat(timespec="seconds")}


def http_get(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """GET a URL under the outbound policy of the `http_request` action (host allowlist,
    address checks, redirects re-checked); a status other than 2xx is an error for the model."""
    url = str(arguments["url"])
    try:
        reply = send(
            OutboundRequest(url=url, timeout=HTTP_GET_TIMEOUT),
            allowlist=context.settings.http_allowlist,
            allow_private=context.settings.http_allow_private,
        )
    except OutboundFailed as exc:
        raise ToolError(f"http_get: {exc.message}") from None
    if not 200 <= reply.status < 300:
        raise ToolError(
            f"http_get: unexpected status {reply.status} {reply.reason}".rstrip()
            + f" from GET {reply.url}"
        )
    return {"status": reply.status, "body": reply.body}


register_tool(
    Tool(
        ToolSpec(
            "calculator",
            "Evaluate an arithmetic expression exactly.",
            {
                "type": "object",
                "required": ["expression"],
                "additionalProperties": False,
                "properties": {"expression": {"type": "string", "maxLength": 200}},
            },
        ),
        calculator,
    )
)
register_tool(
    Tool(
        ToolSpec(
            "current_time",
            "The current date and time in a time zone.",
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "timezone": {"type": "string", "description": "IANA name, default UTC"}
                },
            },
        ),
        current_time,
    )
)
register_tool(
    Tool(
        ToolSpec(
            "http_get",
            "Fetch a URL (allowlisted hosts only).",
            {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {"url": {"type": "string", "format": "uri"}},
            },
        ),
        http_get,
    )
)

"""`web_fetch`: read a web page as text, under the outbound HTTP policy.

The URL goes through `agent33.security.outbound` like every other outbound call (the host
allowlist AGENT33_HTTP_ALLOWLIST, private, loopback and metadata addresses refused unless
AGENT33_HTTP_ALLOW_PRIVATE, the connection pinned to the checked address, each redirect
re-checked). At most AGENT33_WEB_FETCH_MAX_BYTES are read; HTML becomes text with the same
extractor memory ingestion uses (scripts, styles and navigation dropped, headings kept; PDF
and plain text too), and the text given to the model is cut at `max_chars`, saying so.
"""

from __future__ import annotations

from typing import Any

import requests

from agent33.llm.types import ToolSpec
from agent33.memory.extract import ExtractionError, extract
from agent33.security.outbound import OutboundFailed, OutboundRequest, read_limited, send
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

DEFAULT_CHARS = 20_000
MAX_CHARS = 200_000
Body = tuple[bytes, bool]


def _page(arguments: dict[str, Any], context: ToolContext) -> tuple[Any, Body]:
    limit = context.settings.web_fetch_max_bytes

    def read(response: requests.Response, deadline: float, budget: float) -> Body:
        return read_limited(response, deadline, budget, limit)

    url = str(arguments["url"])
    try:
        reply = send(
            OutboundRequest(url=url, timeout=context.settings.tool_timeout),
            allowlist=context.settings.http_allowlist,
            allow_private=context.settings.http_allow_private,
            reader=read,
        )
    except OutboundFailed as exc:
        raise ToolError(f"web_fetch: {exc.message}") from None
    if not 200 <= reply.status < 300:
        raise ToolError(f"web_fetch: {url!r} answered {reply.status} {reply.reason}".rstrip())
    body: Body = reply.body
    return reply, body


def web_fetch(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    reply, (data, cut) = _page(arguments, context)
    declared = reply.headers.get("Content-Type", "")
    kind = declared.split(";")[0].strip().lower()
    try:
        page = extract(data, name=reply.url, media_type=declared or None)
    except ExtractionError as exc:
        raise ToolError(f"web_fetch: {exc.message}") from None
    max_chars = int(arguments.get("max_chars", DEFAULT_CHARS))
    text = page.text
    truncated = cut or len(text) > max_chars
    if len(text) > max_chars:
        text = text[:max_chars]
    if truncated:
        text += "\n[... truncated ...]"
    return {
        "url": reply.url,
        "status": reply.status,
        "content_type": kind or page.media_type,
        "title": page.title,
        "text": text,
        "truncated": truncated,
    }


register_tool(
    Tool(
        ToolSpec(
            "web_fetch",
            "Fetch a web page (allowlisted hosts only) and return its readable text.",
            {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "max_chars": {"type": "integer", "minimum": 100, "maximum": MAX_CHARS},
                },
            },
        ),
        web_fetch,
    )
)

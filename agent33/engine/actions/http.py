"""`http_request`: call an allow-listed HTTP(S) host from a workflow step.

This module only reads the step's `with:` mapping and turns the outcome into a step result; the
rules (host allowlist, address checks against SSRF, pinned connections, redirects re-checked and
credentials dropped on a foreign hop) live in `agent33.security.outbound`, shared with the
`http_get` tool and memory URL ingestion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.security.outbound import (
    DEFAULT_TIMEOUT,
    OutboundFailed,
    OutboundRequest,
    send,
    with_idempotency_key,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
KNOWN = ("url", "method", "headers", "params", "json", "body", "timeout", "expect_status")
MAX_TIMEOUT = 300.0


def _fail(message: str) -> ActionFailed:
    return ActionFailed(f"http_request: {message}", retryable=False)


def _strings(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(f"{name} must be a mapping of names to strings")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _fail(f"{name}.{key} must be a string")
        out[key] = str(item)
    return out


def parse(params: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> OutboundRequest:
    """Check the `with:` mapping; every problem names the parameter."""
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        raise _fail(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise _fail("url must be a non-empty string")
    method = str(params.get("method") or "GET").upper()
    if method not in METHODS:
        raise _fail(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _fail("timeout must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _fail(f"timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got {timeout}")
    body = params.get("body")
    if body is not None and not isinstance(body, str):
        raise _fail("body must be a string (use `json:` for structured data)")
    if body is not None and params.get("json") is not None:
        raise _fail("give either json or body, not both")
    expect = params.get("expect_status")
    if expect is not None and (
        not isinstance(expect, list)
        or not expect
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in expect)
    ):
        raise _fail("expect_status must be a non-empty list of status codes")
    query = params.get("params") or {}
    if not isinstance(query, Mapping):
        raise _fail("params must be a mapping")
    return OutboundRequest(
        url=url,
        method=method,
        headers=_strings(params.get("headers"), "headers"),
        params=dict(query),
        json=params.get("json"),
        body=body,
        timeout=float(timeout),
        expect_status=tuple(expect) if expect is not None else None,
        secrets=tuple(sorted({value for value in secrets if value})),
    )


@register("http_request")
def http_request(context: ActionContext) -> Any:
    """Output `{status, headers, body, url, elapsed_ms}`; 5xx/429/network errors are retryable."""
    resolved = getattr(context.context.get("secrets"), "resolved", None) or {}
    request = parse(context.params, tuple(str(value) for value in resolved.values()))
    # One key per step, the same on every attempt and redelivery: see docs/reliability.md.
    request = with_idempotency_key(request, context.run_id, context.step_id)
    started = time.monotonic()
    try:
        reply = send(
            request,
            allowlist=context.settings.http_allowlist,
            allow_private=context.settings.http_allow_private,
        )
    except OutboundFailed as exc:
        raise ActionFailed(f"http_request: {exc.message}", retryable=exc.retryable) from None
    output = {
        "status": reply.status,
        "headers": dict(reply.headers),
        "body": reply.body,
        "url": reply.url,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }
    status = reply.status
    ok = status in request.expect_status if request.expect_status else 200 <= status < 300
    if not ok:
        raise ActionFailed(
            f"http_request: unexpected status {status} {reply.reason}".rstrip()
            + f" from {request.method} {reply.url}",
            retryable=status >= 500 or status == 429,
            details=output,
        )
    return output

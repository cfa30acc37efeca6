"""HTTP tools declared in `definitions/tools/`: render the call, send it under the outbound
policy, map the reply to what the model sees.

Secrets are read from the vault only when a call is made and only for the names its templates
mention; they never enter the tool's arguments (which are what a step records as inputs), and
any plaintext echoed back by the server is masked in the result. Arguments put into the URL are
percent-encoded, so a model cannot add a path segment or a query parameter of its own.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from agent33.db import session_scope
from agent33.definitions.tools import ToolDef, load_tool_file, templates_of, tool_files
from agent33.errors import Agent33Error
from agent33.llm.types import ToolSpec
from agent33.security.outbound import OutboundFailed, OutboundRequest, send, with_idempotency_key
from agent33.security.vault import (
    SecretValues,
    mask,
    referenced_secrets,
    secret_context,
    vault_for,
)
from agent33.tools.registry import Tool, ToolContext, ToolError

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)  # noqa: S701 - not HTML
_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
ERROR_BODY = 500  # characters of a failing reply quoted to the model


def _secrets(context: ToolContext, templates: list[str]) -> SecretValues:
    """The lazy `secrets` of the call; the database is read only when a template names one."""
    if not referenced_secrets(*templates):
        return SecretValues({}, (), lambda: vault_for(context.settings))
    with session_scope() as session:
        return secret_context(session, context.settings, *templates)


def _render(text: str, values: Mapping[str, Any], *, native: bool = False) -> Any:
    """A template string; with `native`, a string that is one `{{ expr }}` keeps its type."""
    whole = _WHOLE.match(text) if native else None
    if whole is not None and "{{" not in whole.group(1):
        return _ENV.compile_expression(whole.group(1).strip(), undefined_to_none=False)(**values)
    return _ENV.from_string(text).render(**values)


def _render_json(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(value, values, native=True)
    if isinstance(value, Mapping):
        return {key: _render_json(inner, values) for key, inner in value.items()}
    if isinstance(value, list):
        return [_render_json(inner, values) for inner in value]
    return value


def _pick(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _request(tool: ToolDef, arguments: dict[str, Any], context: ToolContext) -> OutboundRequest:
    call = tool.http
    secrets = _secrets(context, list(templates_of(call).values()))
    values = {"arguments": arguments, "secrets": secrets}
    in_url = {key: quote(str(value), safe="") for key, value in arguments.items()}
    try:
        url = _render(call.url, {"arguments": in_url, "secrets": secrets})
        headers = {key: str(_render(value, values)) for key, value in call.headers.items()}
        query = {key: _render(value, values, native=True) for key, value in call.query.items()}
        body = _render_json(call.json, values) if call.json is not None else None
    except TemplateError as exc:
        raise ToolError(f"{tool.name}: cannot build the request: {exc}") from None
    except Agent33Error as exc:  # an unknown or undecryptable secret
        raise ToolError(f"{tool.name}: {exc.message}") from None
    return OutboundRequest(
        url=url,
        method=call.method,
        headers=headers,
        params={k: v for k, v in query.items() if v is not None},
        json=body,
        timeout=min(call.timeout, context.settings.tool_timeout),
        secrets=tuple(sorted(v for v in secrets.resolved.values() if v)),
    )


def http_function(tool: ToolDef) -> Any:
    """The function behind an external tool: its result is the mapped JSON (or text) body."""

    def run(arguments: dict[str, Any], context: ToolContext) -> Any:
        request = _request(tool, arguments, context)
        if context.run_id and context.step_id:  # the same call of the same step: the same key
            call = json.dumps(arguments, sort_keys=True, default=str)
            request = with_idempotency_key(
                request, context.run_id, context.step_id, tool.name, call
            )
        try:
            reply = send(
                request,
                allowlist=context.settings.http_allowlist,
                allow_private=context.settings.http_allow_private,
            )
        except OutboundFailed as exc:
            raise ToolError(f"{tool.name}: {mask(exc.message, request.secrets)}") from None
        expected = tool.response.expect_status
        if not (reply.status in expected if expected else 200 <= reply.status < 300):
            quoted = str(mask(reply.body, request.secrets))[:ERROR_BODY]
            raise ToolError(f"{tool.name}: the server answered {reply.status}: {quoted}")
        pick = tool.response.pick
        result: Any = {"status": reply.status, "body": reply.body}
        if pick:
            result = {name: _pick(reply.body, path) for name, path in pick.items()}
        return mask(result, request.secrets)

    return run


def as_tool(tool: ToolDef) -> Tool:
    return Tool(ToolSpec(tool.name, tool.description, tool.parameters), http_function(tool))


_lock = threading.Lock()
_loaded: dict[Path, tuple[tuple[tuple[str, int, int], ...], dict[str, Tool]]] = {}


def load_external(directory: Path) -> dict[str, Tool]:
    """The tools of `directory/tools/`, re-read only when a file there changed.

    Raises:
        DefinitionError: a file is invalid (named with its field).
    """
    files = tool_files(directory)
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    key = directory.resolve()
    with _lock:
        cached = _loaded.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    tools = {}
    for path in files:
        definition = load_tool_file(path)
        tools[definition.name] = as_tool(definition)
    with _lock:
        _loaded[key] = (stamp, tools)
    return tools

"""`agent33 chat [AGENT] [MESSAGE]`: one question, or an interactive session, through the API.

The REPL streams (`stream: true`, Server-Sent Events) so tokens print as the model produces
them, then the model and token counts. The one-shot form streams the same way at a terminal
(or with `--stream`); piped, it waits for the whole answer, so scripts get the answer alone
(followed by its numbered sources when the agent retrieved any; `--json` for the structured
form). Both go through the HTTP API rather than Celery so the CLI needs nothing but the API's URL.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
import requests

from agent33.cli.client import ApiClient, ApiError
from agent33.cli.output import fail
from agent33.embedded import resolve_settings

REQUEST_TIMEOUT_S = 130.0  # the API's own wait (120 s) plus slack, so its 504 reaches us
PROMPT = "you> "


def _events(response: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse an SSE body into (event, data) pairs as the lines arrive."""
    event, data = "message", ""
    for raw in response.iter_lines(decode_unicode=True):
        line = raw or ""
        if not line:
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def citation_lines(result: dict[str, Any]) -> list[str]:
    """`Sources:` then `[n] Title (key)` per citation; nothing when there are none."""
    citations = result.get("citations") or []
    if not citations:
        return []
    lines = ["Sources:"]
    for c in citations:
        key, title = c.get("key") or c.get("document_id", ""), (c.get("title") or "").strip()
        label = f"{title} ({key})" if title and title != key else key
        where = f", {c['source']}" if c.get("source") and c.get("source") != key else ""
        lines.append(f"  [{c.get('index')}] {label}{where} (chunk {c.get('ordinal')})")
    return lines


def usage_line(result: dict[str, Any]) -> str:
    """`[local/smollm2: 24 prompt + 16 completion = 40 tokens, 0.4 s]` for a streamed answer."""
    usage = result.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    model = "/".join(p for p in (result.get("provider"), result.get("model")) if p) or "model"
    seconds = float(result.get("latency_ms") or 0) / 1000
    return (
        f"[{model}: {prompt} prompt + {completion} completion = {prompt + completion} tokens,"
        f" {seconds:.1f} s]"
    )


def stream_turn(
    client: ApiClient,
    agent: str,
    message: str,
    session_id: str | None,
    rag: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one message with streaming on, echo tokens, and return the final result."""
    body: dict[str, Any] = {"message": message, "agent": agent, "stream": True}
    if session_id:
        body["session_id"] = session_id
    if rag:
        body["rag"] = rag
    url = f"{client.base}/api/v1/chat"
    try:
        response = client.session.post(url, json=body, stream=True, timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as exc:
        raise ApiError(f"cannot reach the API at {client.base} ({type(exc).__name__})") from None
    with response:
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ApiError(error.get("message") or f"HTTP {response.status_code}")
        click.echo("agent> ", nl=False)
        for event, data in _events(response):
            if event == "token":
                click.echo(data.get("delta", ""), nl=False)
            elif event == "done":
                click.echo()
                for line in citation_lines(data):
                    click.echo(line)
                click.echo(usage_line(data))
                return data
            elif event == "error":
                click.echo()
                raise ApiError(str(data.get("message") or data))
    click.echo()
    raise ApiError("the answer stream ended without a result")


def repl(client: ApiClient, agent: str, rag: dict[str, Any] | None = None) -> None:
    """Read messages until `/exit` or EOF; the session id carries the conversation."""
    session_id: str | None = None
    click.echo(f"chatting with {agent!r}; /exit or Ctrl-D to quit")
    while True:
        try:
            message = input(PROMPT).strip()
        except EOFError:
            click.echo()
            return
        if message in ("/exit", "/quit"):
            return
        if not message:
            continue
        try:
            result = stream_turn(client, agent, message, session_id, rag)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            continue
        session_id = result.get("session_id") or session_id


@click.command("chat")
@click.argument("agent", default="assistant")
@click.argument("message", required=False)
@click.option("--session", "session_id", default=None, help="Continue this session id.")
@click.option(
    "--collection",
    default=None,
    help="Answer from this memory collection (retrieval for these messages, with citations).",
)
@click.option("--top-k", type=click.IntRange(1, 50), default=None, help="Sources to retrieve.")
@click.option("--json", "as_json", is_flag=True, help="One-shot: print the whole result as JSON.")
@click.option(
    "--stream/--no-stream",
    default=None,
    help="One-shot: print tokens as they come, then the token counts (default: at a terminal).",
)
def chat_command(
    agent: str,
    message: str | None,
    session_id: str | None,
    collection: str | None,
    top_k: int | None,
    as_json: bool,
    stream: bool | None,
) -> None:
    """Chat with AGENT: answer MESSAGE and exit, or start an interactive session."""
    client = ApiClient(resolve_settings(), timeout=REQUEST_TIMEOUT_S)
    rag: dict[str, Any] = {}
    if collection:
        rag["collection"] = collection
    if top_k is not None:
        rag["top_k"] = top_k
    if message is None:
        repl(client, agent, rag or None)
        return
    if not as_json and (stream if stream is not None else sys.stdout.isatty()):
        try:
            stream_turn(client, agent, message, session_id, rag or None)
        except ApiError as exc:
            fail(exc.message)
        return
    body: dict[str, Any] = {"message": message, "agent": agent}
    if session_id:
        body["session_id"] = session_id
    if rag:
        body["rag"] = rag
    try:
        result = client.post("/api/v1/chat", json=body)
    except ApiError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(result["answer"])
    for line in citation_lines(result):
        click.echo(line)

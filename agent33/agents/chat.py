"""One chat turn of an agent: history and knowledge in, answer out, both messages recorded.

The `agent33.llm.chat` task (tasks/llm.py) only calls `chat_turn`, so the turn can be read and
tested without Celery. Failures the caller must see (unknown agent, provider down, invalid
output) come back as an `{"error": ...}` result rather than a raised exception: Celery's JSON
result backend loses an exception's attributes (which provider failed, the HTTP status to
answer), and a streaming subscriber must hear about every failure or it would wait until its
timeout.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from agent33.agents.knowledge import Knowledge, gather
from agent33.agents.runtime import AgentOutputError, prompt_messages, run_agent
from agent33.agents.sessions import (
    Entry,
    buffer_messages,
    chat_channel,
    deliver_result,
    load_history,
    record_messages,
    redis_client,
)
from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import AgentDef, get_agent
from agent33.errors import Agent33Error
from agent33.llm.provider import LLMError
from agent33.llm.router import router_for
from agent33.llm.types import ChatRequest, ChatResponse, Message, Options
from agent33.tools import ToolContext

__all__ = ["ChatTurn", "chat_turn"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ChatTurn:
    """What the API asked for: the task's keyword arguments, as published."""

    agent: str
    message: str
    session_id: str
    request_id: str
    stream: bool = False
    rag: dict[str, Any] | None = None
    user: str | None = None


class _Publisher:
    """Publishes a request's events; a no-op for non-streamed requests."""

    def __init__(self, settings: Settings, request_id: str, enabled: bool) -> None:
        self.channel = chat_channel(request_id)
        self.client = redis_client(settings) if enabled else None

    def send(self, event: dict[str, Any]) -> None:
        if self.client is not None:
            self.client.publish(self.channel, json.dumps(event, default=str))


def _error(exc: Agent33Error) -> dict[str, Any]:
    """The error result: `status` is what the API answers, `provider` who failed."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message, "fields": exc.fields}
    if isinstance(exc, LLMError):
        body.update(status=502, provider=exc.provider, url=exc.url)
    elif isinstance(exc, AgentOutputError):
        body["status"] = 502
    else:
        body["status"] = exc.http_status
    return {"error": body}


def _streamed(
    agent: AgentDef, messages: list[Message], settings: Settings, publish: _Publisher
) -> tuple[str, ChatResponse]:
    """Stream a tool-less agent's answer token by token to the channel."""
    request = ChatRequest(
        model=agent.model,
        messages=messages,
        options=Options(temperature=agent.temperature, max_tokens=agent.max_tokens),
        stream=True,
    )
    parts: list[str] = []
    final: ChatResponse | None = None
    for chunk in router_for(settings).stream(request, fallbacks=agent.fallbacks):
        if chunk.delta:
            parts.append(chunk.delta)
            publish.send({"delta": chunk.delta})
        if chunk.done and chunk.response is not None:
            final = chunk.response
    if final is None:
        raise LLMError(f"model {agent.model!r}: the stream ended without a final answer")
    return final.content or "".join(parts), final


def _answer(
    agent: AgentDef,
    history: list[Message],
    turn: ChatTurn,
    knowledge: Knowledge,
    settings: Settings,
    publish: _Publisher,
) -> dict[str, Any]:
    """The turn's result fields; tools or an output schema need the full agent loop, whose
    answer is then published as one chunk (its tools run for `turn.user`, e.g. `remember`).
    Both paths build the same prompt (screened input, retrieved sources) and answer with the
    sources' `citations`."""
    if turn.stream and not agent.tools and agent.output_schema is None:
        findings: list[dict[str, Any]] = []
        messages = prompt_messages(
            agent, turn.message, history=history, knowledge=knowledge, findings=findings
        )
        answer, response = _streamed(agent, messages, settings, publish)
        u = response.usage
        return {
            "answer": answer,
            "usage": {
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
            },
            "tool_calls": [],
            "provider": response.provider,
            "model": response.model,
            "latency_ms": round(response.latency_ms, 1),
            "citations": knowledge.citations,
            "screening": findings,
        }
    tools = ToolContext(
        settings=settings,
        agent=agent.name,
        user=turn.user,
        memory_collection=agent.memory.long_term.collection,
    )
    result = run_agent(
        agent,
        turn.message,
        router=router_for(settings),
        history=history,
        context=tools,
        knowledge=knowledge,
    )
    publish.send({"delta": result.content})
    return {
        "answer": result.content,
        "usage": result.usage,
        "tool_calls": result.tool_calls,
        "provider": result.provider,
        "model": result.model,
        "latency_ms": round(result.latency_ms, 1),
        "citations": result.citations,
        "screening": result.screening,
    }


def chat_turn(settings: Settings, turn: ChatTurn) -> dict[str, Any]:
    """Run one turn and hand its result (or its `{"error"}`) to the waiting API thread.

    `turn.rag` overrides the agent's `memory.rag` for this message; `turn.user` (the API
    caller) selects whose long-term memories are recalled (and the `remember` tool stores).
    The messages are committed before they are buffered in Redis and before the result is
    delivered, so an answer the user saw is always in the transcript. Unexpected exceptions are
    delivered as `internal_error` and re-raised for the worker's log.
    """
    sid = uuid.UUID(turn.session_id)
    publish = _Publisher(settings, turn.request_id, turn.stream)
    try:
        with session_scope() as session:
            agent = get_agent(session=session, name=turn.agent)
            history = load_history(session=session, settings=settings, session_id=sid)
            knowledge = gather(
                agent,
                turn.message,
                session=session,
                settings=settings,
                user=turn.user,
                rag_override=turn.rag,
            )
        result = _answer(agent, history, turn, knowledge, settings, publish)
        entries = [
            Entry("user", turn.message),
            Entry("assistant", result["answer"], usage=result["usage"]),
        ]
        with session_scope() as session:
            record_messages(session=session, session_id=sid, agent=turn.agent, entries=entries)
        buffer_messages(settings=settings, session_id=sid, entries=entries)
    except Agent33Error as exc:
        log.warning("chat.failed", agent=turn.agent, session_id=turn.session_id, error=exc.message)
        failure = _error(exc)
        publish.send(failure)
        deliver_result(settings, turn.request_id, failure)
        return failure
    except Exception as exc:
        crash = {
            "error": {"code": "internal_error", "message": f"chat failed: {exc}", "status": 500}
        }
        publish.send(crash)
        deliver_result(settings, turn.request_id, crash)
        raise
    result = {**result, "session_id": turn.session_id}
    publish.send({"done": True, "result": result})
    deliver_result(settings, turn.request_id, result)
    return result

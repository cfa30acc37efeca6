"""One chat turn of an agent: history and knowledge in, answer out, both messages recorded.

The `agent33.llm.chat` task (tasks/llm.py) only calls `chat_turn`, so the turn can be read and
tested without Celery. The API resolves the agent (`resolve_agent`) and says whether the
session is new, so a turn of a known agent in a new session reads nothing before the model
call: the parsed definition comes from this process's cache by its stored row id, and a new
session has no history to load. What a turn writes is one transaction (both messages) and one
Redis round trip (the short-term buffer, the result for the waiting API thread and, streamed,
the `done` event). Failures the caller must see (unknown agent, provider down, invalid
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
from sqlalchemy.orm import Session

from agent33.agents.knowledge import Knowledge, gather
from agent33.agents.routing import route_summary, routed_turn
from agent33.agents.runtime import AgentOutputError, prompt_messages, run_agent
from agent33.agents.sessions import (
    Entry,
    chat_channel,
    deliver_result,
    finish_turn,
    load_history,
    record_messages,
    recorded_answer,
    redis_client,
)
from agent33.agents.turns import redelivery
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import AgentDefinition
from agent33.definitions.agents import AgentDef, get_agent, parse_agent
from agent33.definitions.versions import ParsedCache, find_version, origin_of
from agent33.errors import Agent33Error, NotFound
from agent33.llm.provider import LLMError
from agent33.llm.router import router_for
from agent33.llm.types import ChatRequest, ChatResponse, Message, Options
from agent33.tools import ToolContext

__all__ = ["ChatTurn", "chat_turn", "resolve_agent"]

log = structlog.get_logger(__name__)

# Parsed agents by stored row id (a stored version never changes; a re-created one gets a new id).
_agents: ParsedCache[AgentDef] = ParsedCache()


@dataclass(frozen=True)
class ChatTurn:
    """What the API asked for: the task's keyword arguments, as published.

    `agent_id` (the stored version the API resolved) and `new_session` (the API created the
    session id) are hints: a message without them (from an older API) costs the lookups.
    `route` is the API's `llm.router.route_call` decision (local, or the remote fallback while
    `llm.gpu` is saturated); without it the agent's own model answers."""

    agent: str
    message: str
    session_id: str
    request_id: str
    stream: bool = False
    rag: dict[str, Any] | None = None
    user: str | None = None
    agent_id: str | None = None
    new_session: bool = False
    route: dict[str, Any] | None = None


def resolve_agent(*, session: Session, name: str) -> tuple[AgentDef, uuid.UUID]:
    """The latest version of agent `name` and its stored row id, which the API publishes so the
    worker runs exactly the version the API checked (NotFound when there is none)."""
    row = find_version(session=session, model=AgentDefinition, kind="agent", name=name)
    return _definition(row), row.id


def _definition(row: AgentDefinition) -> AgentDef:
    """The parsed definition of a stored version (parsed once per process)."""
    return _agents.get(row.id, lambda: parse_agent(row.spec, origin=origin_of(row)))


def _agent(session: Session, turn: ChatTurn) -> AgentDef:
    """The turn's agent: by the API's row id (cached, else one primary-key read), else the
    latest version of its name."""
    if turn.agent_id is None:
        return get_agent(session=session, name=turn.agent)
    key = uuid.UUID(turn.agent_id)
    cached = _agents.peek(key)
    if cached is not None:
        return cached
    row = session.get(AgentDefinition, key)
    if row is None:
        raise NotFound(f"agent {turn.agent!r} was deleted", fields={"agent": ["not found"]})
    return _definition(row)


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


def _redelivered(settings: Settings, turn: ChatTurn, publish: _Publisher) -> dict[str, Any] | None:
    """A turn delivered again after its worker died: None to answer it anew (a streaming
    client is told to `restart`), else what to return without calling the model: the answer
    an earlier delivery recorded (handed over again), the `worker_lost` error once the budget
    is spent, or nothing for a client the API has already answered with an error."""
    verdict, count = redelivery(settings, turn.request_id)
    log.warning("chat.redelivered", request_id=turn.request_id, count=count, verdict=verdict)
    if verdict == "abandoned":
        return {"error": {"code": "abandoned", "message": "the client was already answered"}}
    if verdict == "spent":
        failure = {
            "error": {
                "code": "worker_lost",
                "message": f"the worker answering this turn died {count} times; "
                "the turn was not answered",
                "status": 503,
            }
        }
        publish.send(failure)
        deliver_result(settings, turn.request_id, failure)
        return failure
    with session_scope() as session:
        row = recorded_answer(session=session, request_id=turn.request_id)
        if row is None:
            publish.send({"restart": True})
            return None
        entry = Entry("assistant", row.content, usage=row.usage)
    result = {"answer": entry.content, "usage": entry.usage or {}, "session_id": turn.session_id}
    finish_turn(
        settings,
        session_id=uuid.UUID(turn.session_id),
        entries=[entry],
        request_id=turn.request_id,
        result=result,
        channel=publish.channel if turn.stream else None,
        buffer=False,
    )
    return result


def chat_turn(settings: Settings, turn: ChatTurn, *, redelivered: bool = False) -> dict[str, Any]:
    """Run one turn and hand its result (or its `{"error"}`) to the waiting API thread.

    `turn.rag` overrides the agent's `memory.rag` for this message; `turn.user` (the API
    caller) selects whose long-term memories are recalled (and the `remember` tool stores).
    The messages are committed before they are buffered in Redis and before the result is
    delivered, so an answer the user saw is always in the transcript. Unexpected exceptions are
    delivered as `internal_error` and re-raised for the worker's log. (A session that reads
    nothing opens no database connection: SQLAlchemy connects on the first statement.)

    `redelivered` (the broker's flag: the previous worker died holding the turn) costs one
    Redis round trip and one read (`_redelivered`); the messages are keyed by the request id,
    so a turn is recorded once however often it is delivered.
    """
    sid = uuid.UUID(turn.session_id)
    publish = _Publisher(settings, turn.request_id, turn.stream)
    if redelivered and (done := _redelivered(settings, turn, publish)) is not None:
        return done
    try:
        with session_scope() as session:
            agent = _agent(session, turn)
            history = (
                []
                if turn.new_session
                else load_history(session=session, settings=settings, session_id=sid)
            )
            knowledge = gather(
                agent,
                turn.message,
                session=session,
                settings=settings,
                user=turn.user,
                rag_override=turn.rag,
            )
        with routed_turn(settings, agent, turn.route) as chosen:
            result = _answer(chosen, history, turn, knowledge, settings, publish)
        summary = route_summary(turn.route)
        if summary is not None:
            result["route"] = summary
        entries = [
            Entry("user", turn.message),
            Entry("assistant", result["answer"], usage=result["usage"]),
        ]
        with session_scope() as session:
            fresh = record_messages(
                session=session,
                session_id=sid,
                agent=turn.agent,
                entries=entries,
                request_id=turn.request_id,
            )
        result = {**result, "session_id": turn.session_id}
        finish_turn(
            settings,
            session_id=sid,
            entries=entries,
            request_id=turn.request_id,
            result=result,
            channel=publish.channel if turn.stream else None,
            buffer=fresh,
        )
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
    return result

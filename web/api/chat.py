"""`/api/v1/chat`: talk to an agent, answered by the `llm` workers (JSON or Server-Sent Events).

The API thread never calls a model: it publishes `agent33.llm.chat` (through `tasks.dispatch`)
to the queue `route_call` picks for the agent (the rule workflow steps use too) and waits on
the result (bounded), or relays the worker's pub/sub tokens as SSE. It subscribes before
publishing, so no token can be sent before anyone listens. What can be refused without a
model (an unknown agent, invalid `rag` settings, an unknown collection) is refused here, before
anything is published.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import flask
import marshmallow as ma
from flask.views import MethodView

from agent33.agents.chat import resolve_agent
from agent33.agents.knowledge import effective_rag
from agent33.agents.sessions import chat_channel, redis_client, transcript, wait_result
from agent33.agents.turns import abandon
from agent33.db import session_scope
from agent33.definitions.agents import COLLECTION_NAME, TOP_K
from agent33.errors import Agent33Error, NotFound
from agent33.llm.router import route_call
from agent33.memory import store
from agent33.security import scopes as sc
from tasks.dispatch import chat_whereabouts, publish_chat
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, get_settings

MESSAGE_MAX = 20_000
DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_CONFIG_KEY = "AGENT33_CHAT_TIMEOUT"
EXPIRY_MARGIN_S = 30.0  # clock skew between API and workers: only a turn nobody waits for expires

blp = Blueprint("chat", __name__, url_prefix="/api/v1/chat", description="Chat with an agent")


class ChatFailed(Agent33Error):
    """The worker reported a failure; status and code are the worker's (502 for providers)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message") or "chat failed"), fields=error.get("fields"))
        self.code = str(error.get("code") or "chat_failed")
        self.http_status = int(error.get("status") or 502)
        if error.get("provider"):
            self.fields.setdefault("provider", [error["provider"]])


class ChatTimeout(Agent33Error):
    code = "timeout"
    http_status = 504


class ChatUnanswerable(Agent33Error):
    """No answer can come: no worker consumes the turn's queue, or the turn died with its
    worker (code `no_worker` or `worker_lost`)."""

    http_status = 503

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_UNANSWERABLE = {
    "no_worker": "no worker is consuming the {queue!r} queue",
    "lost": "the worker running this turn died; the broker holds it until its visibility timeout",
}


_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat-check")


class _Watch:
    """While an answer is late, asks where the turn is every `chat_worker_check` seconds
    (`tasks.dispatch.chat_whereabouts`: broadcasts that take a second, so they run on a small
    pool beside the wait, which keeps reading the answer). Raises `ChatUnanswerable` when two
    checks in a row say `no_worker` or `lost` (a worker starting, or a turn being redelivered,
    is briefly in neither place). A broker that cannot be asked is not a verdict: the
    request's own timeout still bounds the wait."""

    def __init__(self, request_id: str, queue: str) -> None:
        self.request_id = request_id
        self.queue = queue
        self.every = get_settings().chat_worker_check
        self.next = time.monotonic() + self.every
        self.pending: Future[str] | None = None
        self.verdicts: list[str] = []

    def alive(self) -> None:
        """The worker was just heard from: no check is due."""
        self.next = time.monotonic() + self.every
        self.verdicts.clear()

    def check(self) -> None:
        if self.pending is not None and self.pending.done():
            where = self.pending.result()
            self.pending = None
            self.next = time.monotonic() + self.every
            self.verdicts = [*self.verdicts[-1:], where]
            if len(self.verdicts) == 2 and self.verdicts[0] == where and where in _UNANSWERABLE:
                abandon(get_settings(), self.request_id)
                code = "no_worker" if where == "no_worker" else "worker_lost"
                message = _UNANSWERABLE[where].format(queue=self.queue)
                raise ChatUnanswerable(code, f"the turn cannot be answered: {message}")
        if self.pending is None and time.monotonic() >= self.next:
            self.pending = _checks.submit(_whereabouts, self.request_id, self.queue)


def _whereabouts(request_id: str, queue: str) -> str:
    try:
        return chat_whereabouts(request_id, queue)
    except Exception:  # noqa: BLE001 - broker unreachable: no verdict
        return "unknown"


def _await(request_id: str, queue: str, timeout: float) -> dict[str, Any] | None:
    """The worker's result, waited for in slices between `_Watch` checks; None after
    `timeout` (the turn is then marked abandoned, so a late delivery stays silent)."""
    settings = get_settings()
    watch = _Watch(request_id, queue)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        result = wait_result(settings, request_id, min(left, 1.0))
        if result is not None:
            return result
        watch.check()
    abandon(settings, request_id)
    return None


class ChatRagSchema(ma.Schema):
    """Retrieval for this message only, laid over the agent's `memory.rag` (which it enables
    when the agent has none: then `collection` is required)."""

    collection = ma.fields.String(validate=COLLECTION_NAME)
    top_k = ma.fields.Integer(validate=TOP_K)
    hybrid = ma.fields.Boolean()
    min_score = ma.fields.Float(allow_none=True, validate=ma.validate.Range(-1, 1))
    filters = ma.fields.Dict(
        keys=ma.fields.String(), metadata={"description": "metadata the chunks must contain"}
    )


class ChatRequestSchema(ma.Schema):
    message = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MESSAGE_MAX))
    agent = ma.fields.String(load_default="assistant", validate=ma.validate.Length(1, 200))
    session_id = ma.fields.UUID(load_default=None, allow_none=True)
    stream = ma.fields.Boolean(load_default=False)
    rag = ma.fields.Nested(ChatRagSchema, load_default=None, allow_none=True)


class CitationSchema(ma.Schema):
    """Source `[index]` of the answer: the document and the chunk it was retrieved from."""

    index = ma.fields.Integer()
    document_id = ma.fields.String()
    chunk_id = ma.fields.Integer()
    ordinal = ma.fields.Integer()
    title = ma.fields.String()
    source = ma.fields.String()
    key = ma.fields.String()
    score = ma.fields.Float()


class ChatAnswerSchema(ma.Schema):
    answer = ma.fields.String()
    session_id = ma.fields.UUID()
    usage = ma.fields.Dict()
    tool_calls = ma.fields.List(ma.fields.Dict())
    provider = ma.fields.String()
    model = ma.fields.String()
    latency_ms = ma.fields.Float()
    citations = ma.fields.List(ma.fields.Nested(CitationSchema))
    screening = ma.fields.List(ma.fields.Dict())
    route = ma.fields.Dict(
        metadata={"description": "`route` (local or remote) and `reason`: where the model ran"}
    )


class ChatMessageSchema(ma.Schema):
    role = ma.fields.String()
    content = ma.fields.String()
    agent = ma.fields.String()
    usage = ma.fields.Dict(allow_none=True)
    created_at = ma.fields.DateTime()


class TranscriptSchema(ma.Schema):
    session_id = ma.fields.UUID()
    messages = ma.fields.List(ma.fields.Nested(ChatMessageSchema))


def _timeout() -> float:
    return float(flask.current_app.config.get(TIMEOUT_CONFIG_KEY, DEFAULT_TIMEOUT_S))


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@blp.route("")
class Chat(MethodView):
    @require_scopes(sc.AGENTS_READ)
    @blp.arguments(ChatRequestSchema)
    @blp.response(200, ChatAnswerSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Send a message to an agent

        Continues `session_id` (a new session when absent). With `stream: true` the answer
        arrives as `text/event-stream`: `token` events `{"delta"}`, then `done` with the full
        result, or `error`; `restart` means the worker died and the turn is answered again
        (drop the tokens received so far). With retrieval (the agent's `memory.rag`, or `rag`
        here) the answer cites its sources as `[n]` and `citations` lists them. 404 for an
        unknown agent or collection, 502 when the model provider failed, 503 when no answer can
        come (`no_worker`: nobody consumes the queue; `worker_lost`: the turn died with its
        worker, or was redelivered `AGENT33_CHAT_REDELIVERIES` times), 504 when no answer came
        in time.
        """
        with session_scope() as session:
            agent, agent_id = resolve_agent(session=session, name=body["agent"])
            rag = effective_rag(agent, body["rag"])
            if rag is not None and store.get_collection_or_none(session, rag.collection) is None:
                raise NotFound(
                    f"collection {rag.collection!r} not found",
                    fields={"rag.collection": [f"unknown collection {rag.collection!r}"]},
                )
        request_id = uuid.uuid4().hex
        route = route_call(
            get_settings(), agent.model, queue=agent.queue, remote_fallback=agent.remote_fallback
        )
        queue = route.queue
        kwargs = {
            "agent": agent.name,
            "message": body["message"],
            "session_id": str(body["session_id"] or uuid.uuid4()),
            "request_id": request_id,
            "stream": body["stream"],
            "rag": body["rag"],
            "user": current_principal().subject,
            "agent_id": str(agent_id),
            "new_session": body["session_id"] is None,
            "route": route.record(),
        }
        if body["stream"]:
            return _stream(kwargs, queue)
        publish_chat(kwargs, queue, expires=_timeout() + EXPIRY_MARGIN_S)
        result = _await(request_id, queue, _timeout())
        if result is None:
            raise ChatTimeout(
                f"agent {agent.name!r} did not answer within {_timeout():g}s "
                f"(is a worker consuming the {queue!r} queue?)"
            )
        if not isinstance(result, dict):
            raise ChatFailed(
                {"code": "internal_error", "message": f"chat failed: {result}", "status": 500}
            )
        if "error" in result:
            raise ChatFailed(result["error"])
        return result


def _stream(kwargs: dict[str, Any], queue: str) -> flask.Response:
    """Subscribe, publish, then relay the channel as SSE until done, error or the deadline."""
    settings = get_settings()
    timeout = _timeout()
    pubsub = redis_client(settings).pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(chat_channel(kwargs["request_id"]))
    pubsub.get_message(timeout=5)  # the subscribe confirmation: the server now delivers to us
    try:
        publish_chat(kwargs, queue, expires=timeout + EXPIRY_MARGIN_S)
    except Exception:
        pubsub.close()
        raise
    watch = _Watch(kwargs["request_id"], queue)

    def events() -> Iterator[str]:
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
                if message is None or message.get("type") != "message":
                    try:
                        watch.check()
                    except ChatUnanswerable as exc:
                        yield _sse("error", {"code": exc.code, "message": exc.message})
                        return
                    continue
                event = json.loads(message["data"])
                watch.alive()
                if event.get("restart"):
                    yield _sse("restart", {})
                elif "delta" in event:
                    yield _sse("token", {"delta": event["delta"]})
                elif event.get("done"):
                    yield _sse("done", event["result"])
                    return
                elif "error" in event:
                    yield _sse("error", event["error"])
                    return
            abandon(settings, kwargs["request_id"])
            yield _sse("error", {"code": "timeout", "message": f"no answer within {timeout:g}s"})
        finally:
            pubsub.close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return flask.Response(events(), mimetype="text/event-stream", headers=headers)


@blp.route("/sessions/<uuid:session_id>")
class ChatSession(MethodView):
    @require_scopes(sc.AGENTS_READ)
    @blp.response(200, TranscriptSchema)
    def get(self, session_id: uuid.UUID) -> dict[str, Any]:
        """Get a chat session's messages

        Every stored message, oldest first (the durable record, not the 24 h buffer); 404 when
        the session has none.
        """
        with session_scope() as session:
            messages = transcript(session=session, session_id=session_id)
        if not messages:
            raise NotFound(f"chat session {session_id} not found")
        return {"session_id": session_id, "messages": messages}

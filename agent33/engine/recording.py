"""Recorded model and tool calls: their JSON form, the hash that matches a replayed request to
its recording, and the rows.

A request's hash covers what decides the answer (model, messages, tools, response format,
sampling options), not transport details (stream, timeout), so a replay that builds the same
prompt finds its recording and a changed prompt does not.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import RecordedCall
from agent33.llm.types import ChatRequest, ChatResponse, Message, ToolCall, Usage


def _tool_calls(calls: Sequence[ToolCall] | None) -> list[dict[str, Any]] | None:
    if calls is None:
        return None
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def _message(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": _tool_calls(message.tool_calls),
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def request_json(request: ChatRequest) -> dict[str, Any]:
    options = request.options
    return {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        "tools": [spec.as_function() for spec in request.tools],
        "response_format": request.response_format,
        "options": {
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "seed": options.seed,
            "stop": list(options.stop),
            "top_p": options.top_p,
            "extra": dict(options.extra),
        },
    }


def response_json(response: ChatResponse) -> dict[str, Any]:
    return {
        "content": response.content,
        "tool_calls": _tool_calls(response.tool_calls),
        "finish_reason": response.finish_reason,
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
            "total_tokens": response.usage.total_tokens,
        },
        "latency_ms": response.latency_ms,
        "model": response.model,
        "provider": response.provider,
    }


def response_of(data: dict[str, Any]) -> ChatResponse:
    usage = data.get("usage") or {}
    return ChatResponse(
        content=data.get("content") or "",
        tool_calls=tuple(
            ToolCall(c["id"], c["name"], dict(c.get("arguments") or {}))
            for c in data.get("tool_calls") or ()
        ),
        finish_reason=data.get("finish_reason") or "stop",
        usage=Usage.of(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        latency_ms=float(data.get("latency_ms") or 0.0),
        model=data.get("model") or "",
        provider=data.get("provider") or "",
    )


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of `value`."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tool_request(name: str, arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def add(*, session: Session, **row: Any) -> RecordedCall:
    call = RecordedCall(**row)
    session.add(call)
    return call


def final_attempt(*, session: Session, run_id: uuid.UUID, step_id: str) -> list[RecordedCall]:
    """The calls of the step's last recorded attempt (the one whose output the run kept), in
    order; a replay answers from these."""
    last = session.scalar(
        select(func.max(RecordedCall.attempt)).where(
            RecordedCall.run_id == run_id, RecordedCall.step_id == step_id
        )
    )
    if last is None:
        return []
    return list(
        session.scalars(
            select(RecordedCall)
            .where(
                RecordedCall.run_id == run_id,
                RecordedCall.step_id == step_id,
                RecordedCall.attempt == last,
            )
            .order_by(RecordedCall.sequence)
        )
    )


def of_run(*, session: Session, run_id: uuid.UUID) -> list[RecordedCall]:
    return list(
        session.scalars(
            select(RecordedCall)
            .where(RecordedCall.run_id == run_id)
            .order_by(RecordedCall.step_id, RecordedCall.attempt, RecordedCall.sequence)
        )
    )

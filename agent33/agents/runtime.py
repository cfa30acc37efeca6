"""The agent runtime: prompt assembly, a bounded tool-calling loop, structured output.

One call of `run_agent` is one agent turn: the model may ask for tools (only those the agent
allows), their results are fed back, up to `max_tool_rounds`; an output schema is enforced
with one repair attempt. Token usage and latency are summed over every model call, and a
fallback model continues the same conversation (the router re-sends the whole history).

The prompt is: system (the agent's prompt, plus how to cite when sources were retrieved), the
retrieved context and recalled memories (`Knowledge`, gathered by the caller in its session),
the history, then the user input; the answer carries the sources' `citations`.

The user input and every tool result are screened for prompt injection before the model sees
them, per the agent's `injection` policy (warn / strip / block); every hit is returned in
`screening` so the step output and run events record it (retrieved text is screened when it
is gathered, see `agent33.agents.knowledge`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from agent33.agents.knowledge import Knowledge
from agent33.agents.screening import InjectionBlocked, screened
from agent33.agents.tool_approval import (
    ToolApprovalRequired,
    call_json,
    call_of,
    message_json,
    message_of,
    refusal,
    unattended,
)
from agent33.definitions.agents import AgentDef
from agent33.errors import Agent33Error
from agent33.llm.router import Router
from agent33.llm.types import ChatRequest, ChatResponse, Message, Options, ToolCall, Usage
from agent33.tools import ToolContext
from agent33.tools.governance import call_tool, tool_specs

__all__ = [
    "AgentOutputError",
    "AgentResult",
    "InjectionBlocked",
    "ToolApprovalRequired",
    "prompt_messages",
    "run_agent",
    "user_text",
]


class AgentOutputError(Agent33Error):
    """The model's answer did not match the agent's output schema, even after one repair."""

    code = "agent_output_invalid"


@dataclass
class AgentResult:
    content: str
    output: Any
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    latency_ms: float = 0.0
    model_calls: int = 0
    provider: str = ""
    model: str = ""
    messages: list[Message] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    screening: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)

    def as_output(self) -> dict[str, Any]:
        """The JSON stored as the step output (and returned by the chat API)."""
        return {
            "content": self.content,
            "output": self.output,
            "tool_calls": self.tool_calls,
            "usage": self.usage,
            "latency_ms": round(self.latency_ms, 1),
            "model_calls": self.model_calls,
            "provider": self.provider,
            "model": self.model,
            "calls": self.calls,
            "screening": self.screening,
            "citations": self.citations,
        }


def _system_prompt(agent: AgentDef) -> str:
    prompt = agent.system_prompt
    if agent.output_schema is not None:
        prompt += "\n\nAnswer with one JSON value only, matching this JSON Schema:\n" + json.dumps(
            agent.output_schema
        )
    return prompt


def user_text(user_input: Any) -> str:
    return user_input if isinstance(user_input, str) else json.dumps(user_input)


def prompt_messages(
    agent: AgentDef,
    user_input: Any,
    *,
    history: Sequence[Message] = (),
    knowledge: Knowledge | None = None,
    findings: list[dict[str, Any]],
) -> list[Message]:
    """System, retrieved context and memories, history, then the (screened) user input."""
    user_input = screened(agent, user_input, "user input", findings)
    system = _system_prompt(agent)
    context = ""
    if knowledge is not None:
        findings.extend(knowledge.findings)
        if fragment := knowledge.instructions():
            system += "\n\n" + fragment
        context = knowledge.message_text()
    return [
        Message("system", system),
        *([Message("system", context)] if context else []),
        *history,
        Message("user", user_text(user_input)),
    ]


def _schema_errors(schema: dict[str, Any], content: str) -> tuple[Any, list[str]]:
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        return None, [f"not JSON: {exc.msg}"]
    validator = Draft202012Validator(schema, registry=Registry())
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(value), key=str)[:5]
    ]
    return value, errors


class _Turn:
    """Accumulates usage, latency and provenance over the model calls of one turn."""

    def __init__(self, agent: AgentDef, router: Router, context: ToolContext) -> None:
        self.agent, self.router = agent, router
        self.specs = tool_specs(agent.tools, context.settings) if agent.tools else []
        self.usage = Usage()
        self.latency_ms = 0.0
        self.calls = 0
        self.log: list[dict[str, Any]] = []
        self.last: ChatResponse | None = None

    def snapshot(self) -> dict[str, Any]:
        """What a parked turn has spent so far (restored when it resumes)."""
        u = self.usage
        return {
            "usage": [u.prompt_tokens, u.completion_tokens, u.total_tokens],
            "latency_ms": self.latency_ms,
            "calls": self.calls,
            "log": self.log,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.usage = Usage(*snapshot["usage"])
        self.latency_ms = float(snapshot["latency_ms"])
        self.calls = int(snapshot["calls"])
        self.log = list(snapshot["log"])

    def ask(self, messages: Sequence[Message], *, tools: bool) -> ChatResponse:
        specs = self.specs if tools else []
        request = ChatRequest(
            model=self.agent.model,
            messages=list(messages),
            tools=specs,
            response_format=self.agent.output_schema,
            options=Options(temperature=self.agent.temperature, max_tokens=self.agent.max_tokens),
        )
        response = self.router.chat(request, fallbacks=self.agent.fallbacks)
        self.calls += 1
        self.latency_ms += response.latency_ms
        u = response.usage
        self.usage = Usage(
            self.usage.prompt_tokens + u.prompt_tokens,
            self.usage.completion_tokens + u.completion_tokens,
            self.usage.total_tokens + u.total_tokens,
        )
        self.last = response
        self.log.append(
            {
                "provider": response.provider,
                "model": response.model,
                "finish_reason": response.finish_reason,
                "latency_ms": round(response.latency_ms, 1),
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
            }
        )
        return response


def _run_tool(agent: AgentDef, call: ToolCall, context: ToolContext) -> tuple[str, dict[str, Any]]:
    """Run one requested tool under governance; the result (or refusal) goes back to the model."""
    record = call_tool(
        call.name,
        call.arguments,
        context,
        allowed=agent.tools,
        agent=agent.name,
        call_id=call.id,
    )
    payload = {"error": record["error"]} if "error" in record else record["result"]
    return json.dumps(payload, default=str), record


class _Loop:
    """Runs the tool calls of one model response; parks (or refuses) approval-required ones."""

    def __init__(
        self,
        agent: AgentDef,
        context: ToolContext,
        messages: list[Message],
        records: list[dict[str, Any]],
        findings: list[dict[str, Any]],
        turn: _Turn,
        park: bool,
    ) -> None:
        self.agent, self.context, self.turn, self.park = agent, context, turn, park
        self.messages, self.records, self.findings = messages, records, findings

    def run_calls(
        self, calls: list[ToolCall], round_number: int, decisions: Mapping[str, Any]
    ) -> None:
        for index, call in enumerate(calls):
            decision = decisions.get(call.id)
            if call.name in self.agent.approval_tools and decision is None:
                if self.park:
                    raise ToolApprovalRequired(call, self._state(calls[index:], round_number))
                content, record = unattended(call)
            elif decision is not None and not decision.get("approved"):
                content, record = refusal(call, decision)
            else:
                content, record = _run_tool(self.agent, call, self.context)
                content = _screened_tool_result(self.agent, call.name, content, self.findings)
                if decision is not None:
                    record["approval"] = dict(decision)
            self.records.append(record)
            self.messages.append(Message("tool", content, tool_call_id=call.id, name=call.name))

    def _state(self, pending: list[ToolCall], round_number: int) -> dict[str, Any]:
        return {
            "messages": [message_json(m) for m in self.messages],
            "pending": [call_json(c) for c in pending],
            "records": self.records,
            "findings": self.findings,
            "round": round_number,
            "turn": self.turn.snapshot(),
        }


def _screened_tool_result(
    agent: AgentDef, name: str, content: str, findings: list[dict[str, Any]]
) -> str:
    """Tool results are JSON text: screen the decoded value so escapes cannot hide anything."""
    payload = json.loads(content)
    cleaned = screened(agent, payload, f"tool {name}", findings)
    return content if cleaned is payload else json.dumps(cleaned, default=str)


def run_agent(
    agent: AgentDef,
    user_input: Any,
    *,
    router: Router,
    history: Sequence[Message] = (),
    context: ToolContext | None = None,
    knowledge: Knowledge | None = None,
    park: bool = False,
    resume: Mapping[str, Any] | None = None,
) -> AgentResult:
    """One agent turn; raises the router's error (naming providers) when no model answered.

    `park`: a call of an approval-required tool raises `ToolApprovalRequired` (whose state,
    with the person's decision added under `decisions`, is passed back as `resume` to continue
    the turn); without it such a call is refused (nobody could approve it)."""
    started = time.perf_counter()
    context = context or ToolContext()
    findings: list[dict[str, Any]] = []
    turn = _Turn(agent, router, context)
    records: list[dict[str, Any]] = []
    first_round = 0
    if resume is not None:
        messages = [message_of(m) for m in resume["messages"]]
        records = list(resume["records"])
        findings = list(resume["findings"])
        turn.restore(resume["turn"])
        first_round = int(resume["round"]) + 1
        pending = [call_of(c) for c in resume["pending"]]
        loop = _Loop(agent, context, messages, records, findings, turn, park)
        loop.run_calls(pending, int(resume["round"]), dict(resume.get("decisions") or {}))
    else:
        messages = prompt_messages(
            agent, user_input, history=history, knowledge=knowledge, findings=findings
        )
        loop = _Loop(agent, context, messages, records, findings, turn, park)
    for round_number in range(first_round, agent.max_tool_rounds + 1):
        allow_tools = bool(agent.tools) and round_number < agent.max_tool_rounds
        response = turn.ask(messages, tools=allow_tools)
        if not response.tool_calls or not allow_tools:
            break
        messages.append(Message("assistant", response.content, tool_calls=response.tool_calls))
        loop.run_calls(list(response.tool_calls), round_number, {})
    assert turn.last is not None
    content = turn.last.content
    output: Any = content
    if agent.output_schema is not None:
        output, errors = _schema_errors(agent.output_schema, content)
        if errors:
            messages.append(Message("assistant", content))
            messages.append(
                Message(
                    "user",
                    "Your answer did not match the required JSON Schema ("
                    + "; ".join(errors)
                    + "). Reply with corrected JSON only.",
                )
            )
            content = turn.ask(messages, tools=False).content
            output, errors = _schema_errors(agent.output_schema, content)
            if errors:
                raise AgentOutputError(
                    f"agent {agent.name!r}: the answer does not match its output schema after one "
                    f"repair: {'; '.join(errors)}",
                    fields={"output": errors},
                )
    messages.append(Message("assistant", content))
    last = turn.last
    return AgentResult(
        content=content,
        output=output,
        tool_calls=records,
        usage={
            "prompt_tokens": turn.usage.prompt_tokens,
            "completion_tokens": turn.usage.completion_tokens,
            "total_tokens": turn.usage.total_tokens,
        },
        latency_ms=(time.perf_counter() - started) * 1000,
        model_calls=turn.calls,
        provider=last.provider,
        model=last.model,
        messages=messages,
        calls=turn.log,
        screening=findings,
        citations=knowledge.citations if knowledge is not None else [],
    )

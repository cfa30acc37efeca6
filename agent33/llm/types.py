"""Provider-neutral chat types: every provider maps its wire format to and from these.

Frozen dataclasses so a request can be re-sent to a fallback model unchanged (`replace`), and so
Celery payloads built from them stay plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]
# None: free text; "json": any JSON object; a mapping: a JSON Schema the answer must match.
ResponseFormat = Literal["json"] | Mapping[str, Any] | None


@dataclass(frozen=True)
class ToolCall:
    """A model's request to run a tool; `arguments` is always parsed (never a JSON string)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One chat turn; `tool_call_id`/`name` identify the call a `tool` message answers."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model; `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def as_function(self) -> dict[str, Any]:
        """The OpenAI-style declaration, which Ollama's `/api/chat` accepts as well."""
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": dict(self.parameters)}}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt: int | None, completion: int | None) -> Usage:
        """Build from possibly-missing counts (servers omit zero metrics)."""
        p, c = int(prompt or 0), int(completion or 0)
        return cls(p, c, p + c)


@dataclass(frozen=True)
class Options:
    """Sampling options; `extra` passes provider-specific keys through untouched."""

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatRequest:
    """`stream=True` makes `chat()` stream internally, so the read timeout bounds silence
    between tokens rather than the whole generation; `timeout` overrides the read timeout."""

    model: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    response_format: ResponseFormat = None
    options: Options = field(default_factory=Options)
    stream: bool = False
    timeout: float | None = None


@dataclass(frozen=True)
class ChatResponse:
    """A complete answer; `provider` names who answered (the router's key for it)."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    usage: Usage
    latency_ms: float
    model: str
    provider: str


@dataclass(frozen=True)
class ChatChunk:
    """A streamed fragment; only the last has `done=True` and carries the full `response`."""

    delta: str
    done: bool = False
    response: ChatResponse | None = None

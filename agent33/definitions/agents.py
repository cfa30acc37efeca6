"""Agent definitions: the typed model, its marshmallow schema, file loading and stored versions.

Files live in `definitions/agents/NAME.yaml|json` (auto-discovered); the API stores versions in
`agent_definitions` exactly like workflows (same name + version + different body = conflict).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate
from sqlalchemy.orm import Session

from agent33.db.models import AgentDefinition
from agent33.definitions.loader import SUFFIXES, check_file_name, load_with, read_document
from agent33.definitions.schemas import NAME
from agent33.definitions.versions import (
    ParsedCache,
    find_version,
    latest_versions,
    origin_of,
    save_version,
)

# Mirrors agent33.memory.service.COLLECTION_NAME_PATTERN (definitions sit below memory).
COLLECTION_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
    error="a collection name: letters, digits, '_', '.', ':' or '-' (at most 100)",
)
DEFAULT_MEMORY_COLLECTION = "agent-memory"


@dataclass(frozen=True)
class RagSettings:
    """`memory.rag`: which collection answers this agent's questions, and how much of it."""

    collection: str
    top_k: int = 5
    hybrid: bool = True
    min_score: float | None = None
    budget_tokens: int = 1500
    filters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LongTermSettings:
    """`memory.long_term`: recall this agent's memories of the user before each turn."""

    enabled: bool = False
    collection: str = DEFAULT_MEMORY_COLLECTION
    top_k: int = 3
    budget_tokens: int = 300


@dataclass(frozen=True)
class MemorySettings:
    rag: RagSettings | None = None
    long_term: LongTermSettings = field(default_factory=LongTermSettings)


@dataclass(frozen=True)
class AgentDef:
    name: str
    version: int
    model: str
    system_prompt: str
    role: str = "assistant"
    description: str = ""
    fallbacks: tuple[str, ...] = ()
    # Where a GPU-tagged model call goes while `llm.gpu` is saturated (agent33.llm.router).
    remote_fallback: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_tool_rounds: int = 4
    tools: tuple[str, ...] = ()
    # Tools listed as `{name: X, approval: required}`: a call parks the step until approved.
    approval_tools: frozenset[str] = frozenset()
    queue: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    memory: MemorySettings = field(default_factory=MemorySettings)
    # Prompt-injection screening of user input and tool results (agent33.security.injection).
    injection: dict[str, Any] = field(default_factory=lambda: {"policy": "warn", "threshold": 0.5})


class InjectionSchema(Schema):
    """`injection: {policy, threshold}`; warn by default so existing agents keep working."""

    policy = fields.String(load_default="warn", validate=validate.OneOf(("warn", "block", "strip")))
    threshold = fields.Float(load_default=0.5, validate=validate.Range(0, 1))


TOP_K = validate.Range(1, 50)
BUDGET = validate.Range(50, 32_000)


class RagSchema(Schema):
    """`memory.rag` (and the per-request `rag` of the chat API, which may omit `collection`)."""

    collection = fields.String(required=True, validate=COLLECTION_NAME)
    top_k = fields.Integer(load_default=5, validate=TOP_K)
    hybrid = fields.Boolean(load_default=True)
    min_score = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-1, 1))
    budget_tokens = fields.Integer(load_default=1500, validate=BUDGET)
    filters = fields.Dict(keys=fields.String(), load_default=dict)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RagSettings:
        return RagSettings(**data)


class LongTermSchema(Schema):
    enabled = fields.Boolean(load_default=False)
    collection = fields.String(load_default=DEFAULT_MEMORY_COLLECTION, validate=COLLECTION_NAME)
    top_k = fields.Integer(load_default=3, validate=TOP_K)
    budget_tokens = fields.Integer(load_default=300, validate=BUDGET)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> LongTermSettings:
        return LongTermSettings(**data)


class MemorySchema(Schema):
    """`memory: {rag?, long_term?}`; both off by default."""

    rag = fields.Nested(RagSchema, load_default=None, allow_none=True)
    long_term = fields.Nested(LongTermSchema, load_default=LongTermSettings)

    @pre_load
    def _legacy(self, data: Any, **_: Any) -> Any:
        """`agent33 init` used to write `memory: {enabled: false}`; stored versions keep it."""
        if isinstance(data, dict) and data.get("enabled") is False:
            data = {k: v for k, v in data.items() if k != "enabled"}
        return data

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> MemorySettings:
        return MemorySettings(**data)


def rag_settings(
    base: RagSettings | None, override: Mapping[str, Any] | None
) -> RagSettings | None:
    """The agent's RAG settings with a per-request `override` laid over them (validated; the
    override may enable RAG for an agent without it, then it must name the collection).

    Raises:
        ValidationError: an invalid override, field names relative to it.
    """
    if not override:
        return base
    document = {**asdict(base), **override} if base is not None else dict(override)
    merged: RagSettings = RagSchema().load(document)
    return merged


_parsed: ParsedCache[AgentDef] = ParsedCache()


class ToolEntry(fields.Field[dict[str, str]]):
    """A tool name, or `{name, approval: required | none}` (a call of an `approval: required`
    tool waits for a person to approve it)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value:
            return {"name": value, "approval": "none"}
        if isinstance(value, dict):
            name, approval = value.get("name"), value.get("approval", "none")
            unknown = sorted(set(value) - {"name", "approval"})
            if unknown:
                raise ValidationError(f"unknown keys {unknown} (a tool has name and approval)")
            if not isinstance(name, str) or not name:
                raise ValidationError("`name` must be a tool name")
            if approval not in ("required", "none"):
                raise ValidationError("`approval` must be 'required' or 'none'")
            return {"name": name, "approval": approval}
        raise ValidationError("a tool is a name or {name, approval: required}")


class AgentSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    version = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    role = fields.String(load_default="assistant")
    description = fields.String(load_default="")
    model = fields.String(required=True, validate=validate.Length(1, 200))
    fallbacks = fields.List(fields.String(), load_default=list)
    remote_fallback = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 200)
    )
    system_prompt = fields.String(load_default="You are a helpful assistant.")
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 2))
    max_tokens = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(1, 200_000)
    )
    max_tool_rounds = fields.Integer(load_default=4, validate=validate.Range(0, 20))
    tools = fields.List(ToolEntry(), load_default=list)
    queue = fields.String(load_default=None, allow_none=True)
    input_schema = fields.Dict(load_default=None, allow_none=True)
    output_schema = fields.Dict(load_default=None, allow_none=True)
    memory = fields.Nested(MemorySchema, load_default=MemorySettings)
    injection = fields.Nested(InjectionSchema, load_default=lambda: InjectionSchema().load({}))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> AgentDef:
        data["fallbacks"] = tuple(data["fallbacks"])
        entries = data.pop("tools")
        data["tools"] = tuple(e["name"] for e in entries)
        data["approval_tools"] = frozenset(
            e["name"] for e in entries if e["approval"] == "required"
        )
        return AgentDef(**data)


def parse_agent(
    document: dict[str, Any], *, origin: str = "<api>", tools: Collection[str] | None = None
) -> AgentDef:
    """Validate an agent document: schema, queue, valid JSON Schemas, and, when the caller
    passes the registered tool names (`agent33.tools.known_tools()`), that every tool exists.

    The names come from the caller because tools sit above definitions; whoever stores a
    definition (the API, `serve`'s sync) passes them. A stored version is not checked again when
    read: it was checked when stored, and the runtime refuses an unknown tool anyway.
    """
    return load_with(
        AgentSchema(),
        document,
        origin=origin,
        checks=lambda agent: _semantic_problems(agent, tools),
    )


def _semantic_problems(agent: AgentDef, tools: Collection[str] | None) -> dict[str, list[str]]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from agent33.wire import Queue, is_known_queue

    problems: dict[str, list[str]] = {}
    if tools is not None:
        available = sorted(tools)
        for tool in agent.tools:
            if tool not in available:
                problems.setdefault("tools", []).append(
                    f"unknown tool {tool!r} (known: {', '.join(available)})"
                )
    if agent.queue is not None and (
        not is_known_queue(agent.queue) or not agent.queue.startswith("llm")
    ):
        llm_queues = ", ".join(q.value for q in Queue if q.value.startswith("llm"))
        problems.setdefault("queue", []).append(f"must be one of {llm_queues}")
    for key in ("input_schema", "output_schema"):
        schema = getattr(agent, key)
        if schema is not None:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.setdefault(key, []).append(f"not a valid JSON Schema: {exc.message}")
    return problems


def agent_files(directory: Path) -> list[Path]:
    folder = directory / "agents"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_agent_file(
    path: Path, *, tools: Collection[str] | None = None
) -> tuple[AgentDef, dict[str, Any]]:
    document = read_document(path)
    agent = parse_agent(document, origin=str(path), tools=tools)
    check_file_name(agent.name, path)
    return agent, document


def save_agent(
    *, session: Session, agent: AgentDef, document: dict[str, Any], source: str = "api"
) -> tuple[AgentDefinition, bool]:
    return save_version(
        session=session,
        model=AgentDefinition,
        kind="agent",
        name=agent.name,
        version=agent.version,
        description=agent.description,
        document=document,
        source=source,
    )


def get_agent(*, session: Session, name: str, version: int | None = None) -> AgentDef:
    """The parsed agent (stored versions never change, so parsing is cached per version)."""
    row = find_version(
        session=session, model=AgentDefinition, kind="agent", name=name, version=version
    )
    return _parsed.get(row.id, lambda: parse_agent(row.spec, origin=origin_of(row)))


def list_agents(*, session: Session) -> list[AgentDefinition]:
    return latest_versions(session=session, model=AgentDefinition)


def sync_agents(
    *, session: Session, directory: Path, tools: Collection[str] | None = None
) -> list[tuple[AgentDefinition, bool]]:
    """Store every shipped agent file whose version is not stored yet (`tools`: as in
    `parse_agent`)."""
    return [
        save_agent(session=session, agent=agent, document=document, source=str(path))
        for path in agent_files(directory)
        for agent, document in [load_agent_file(path, tools=tools)]
    ]

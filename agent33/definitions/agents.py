"""Agent definitions: the typed model, its marshmallow schema, file loading and stored versions.

Files live in `definitions/agents/NAME.yaml|json` (auto-discovered); the API stores versions in
`agent_definitions` exactly like workflows (same name + version + different body = conflict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields, post_load, validate
from sqlalchemy.orm import Session

from agent33.db.models import AgentDefinition
from agent33.definitions.loader import SUFFIXES, check_file_name, load_with, read_document
from agent33.definitions.schemas import NAME
from agent33.definitions.versions import ParsedCache, find_version, latest_versions, save_version


@dataclass(frozen=True)
class AgentDef:
    name: str
    version: int
    model: str
    system_prompt: str
    role: str = "assistant"
    description: str = ""
    fallbacks: tuple[str, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    max_tool_rounds: int = 4
    tools: tuple[str, ...] = ()
    queue: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    # Prompt-injection screening of user input and tool results (agent33.security.injection).
    injection: dict[str, Any] = field(default_factory=lambda: {"policy": "warn", "threshold": 0.5})


class InjectionSchema(Schema):
    """`injection: {policy, threshold}`; warn by default so existing agents keep working."""

    policy = fields.String(load_default="warn", validate=validate.OneOf(("warn", "block", "strip")))
    threshold = fields.Float(load_default=0.5, validate=validate.Range(0, 1))


_parsed: ParsedCache[AgentDef] = ParsedCache()


class AgentSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    version = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    role = fields.String(load_default="assistant")
    description = fields.String(load_default="")
    model = fields.String(required=True, validate=validate.Length(1, 200))
    fallbacks = fields.List(fields.String(), load_default=list)
    system_prompt = fields.String(load_default="You are a helpful assistant.")
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 2))
    max_tokens = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(1, 200_000)
    )
    max_tool_rounds = fields.Integer(load_default=4, validate=validate.Range(0, 20))
    tools = fields.List(fields.String(), load_default=list)
    queue = fields.String(load_default=None, allow_none=True)
    input_schema = fields.Dict(load_default=None, allow_none=True)
    output_schema = fields.Dict(load_default=None, allow_none=True)
    memory = fields.Dict(load_default=dict)
    injection = fields.Nested(InjectionSchema, load_default=lambda: InjectionSchema().load({}))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> AgentDef:
        data["fallbacks"] = tuple(data["fallbacks"])
        data["tools"] = tuple(data["tools"])
        return AgentDef(**data)


def parse_agent(document: dict[str, Any], *, origin: str = "<api>") -> AgentDef:
    """Validate an agent document: schema, known tools, known queue, valid JSON Schemas."""
    return load_with(AgentSchema(), document, origin=origin, checks=_semantic_problems)


def _semantic_problems(agent: AgentDef) -> dict[str, list[str]]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from agent33.tools import known_tools
    from agent33.wire import Queue, is_known_queue

    problems: dict[str, list[str]] = {}
    available = known_tools()
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


def load_agent_file(path: Path) -> tuple[AgentDef, dict[str, Any]]:
    document = read_document(path)
    agent = parse_agent(document, origin=str(path))
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
    return _parsed.get(
        row.id, lambda: parse_agent(row.spec, origin=f"{row.source} ({row.name} v{row.version})")
    )


def list_agents(*, session: Session) -> list[AgentDefinition]:
    return latest_versions(session=session, model=AgentDefinition)


def sync_agents(*, session: Session, directory: Path) -> list[tuple[AgentDefinition, bool]]:
    """Store every shipped agent file whose version is not stored yet."""
    return [
        save_agent(session=session, agent=agent, document=document, source=str(path))
        for path in agent_files(directory)
        for agent, document in [load_agent_file(path)]
    ]

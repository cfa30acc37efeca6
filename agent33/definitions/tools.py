"""External tool definitions: HTTP tools declared in `definitions/tools/NAME.yaml|json`.

A tool is what the model sees (name, description, JSON Schema of its arguments) plus how to call
it: a method, a URL template, headers (`{{ secrets.X }}` reads the vault when the call is made,
so no secret is ever in a definition, an argument or a step's inputs), query and JSON body
templates, and a response mapping. Templates may read only `arguments` and `secrets`; every
problem is named by file and field when the file is loaded, so a bad tool stops `serve` (and a
workflow or agent naming an unknown tool is refused) before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from marshmallow import Schema, fields, post_load, validate

from agent33.definitions.loader import SUFFIXES, check_file_name, load_with, read_document
from agent33.definitions.schemas import NAME

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TEMPLATE_NAMES = frozenset({"arguments", "secrets"})
MAX_TIMEOUT = 300.0
_ENV = SandboxedEnvironment()


@dataclass(frozen=True)
class HttpCall:
    """How the tool is called; every string may be a template over `arguments` and `secrets`."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    timeout: float = 30.0


@dataclass(frozen=True)
class ResponseMapping:
    """What the model gets back: `pick` maps result names to dotted paths in the JSON body
    (empty: the whole body); `expect_status` lists the statuses that count as success."""

    pick: Mapping[str, str] = field(default_factory=dict)
    expect_status: tuple[int, ...] = ()


@dataclass(frozen=True)
class ToolDef:
    name: str
    version: int
    description: str
    parameters: dict[str, Any]
    http: HttpCall
    response: ResponseMapping = field(default_factory=ResponseMapping)


class HttpSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(1, 2000))
    method = fields.String(
        load_default="GET", validate=validate.OneOf(METHODS + tuple(m.lower() for m in METHODS))
    )
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    query = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    json = fields.Raw(load_default=None, allow_none=True)
    timeout = fields.Float(load_default=30.0, validate=validate.Range(0.1, MAX_TIMEOUT))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> HttpCall:
        return HttpCall(**{**data, "method": data["method"].upper()})


class ResponseSchema(Schema):
    pick = fields.Dict(
        keys=fields.String(), values=fields.String(validate=validate.Length(1)), load_default=dict
    )
    expect_status = fields.List(
        fields.Integer(validate=validate.Range(100, 599)), load_default=list
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ResponseMapping:
        return ResponseMapping(pick=data["pick"], expect_status=tuple(data["expect_status"]))


class ToolSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    version = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    description = fields.String(required=True, validate=validate.Length(1, 1000))
    parameters = fields.Dict(load_default=lambda: {"type": "object", "properties": {}})
    http = fields.Nested(HttpSchema, required=True)
    response = fields.Nested(ResponseSchema, load_default=ResponseMapping)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ToolDef:
        return ToolDef(**data)


def templates_of(call: HttpCall) -> dict[str, str]:
    """Every template string of a call by its field path (`http.headers.X`, `http.json.a.0`)."""
    found = {"http.url": call.url}
    found.update({f"http.headers.{k}": v for k, v in call.headers.items()})
    found.update({f"http.query.{k}": v for k, v in call.query.items()})

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            found[path] = value
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}")
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, f"{path}.{index}")

    walk(call.json, "http.json")
    return found


def _problems(tool: ToolDef) -> dict[str, list[str]]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    problems: dict[str, list[str]] = {}
    try:
        Draft202012Validator.check_schema(tool.parameters)
    except SchemaError as exc:
        problems["parameters"] = [f"not a valid JSON Schema: {exc.message}"]
    else:
        if tool.parameters.get("type") != "object":
            problems["parameters"] = ["must be a JSON Schema of `type: object`"]
    for path, text in templates_of(tool.http).items():
        try:
            names = meta.find_undeclared_variables(_ENV.parse(text))
        except TemplateSyntaxError as exc:
            problems[path] = [f"template syntax: {exc.message}"]
            continue
        unknown = sorted(names - TEMPLATE_NAMES)
        if unknown:
            problems[path] = [f"templates may read only arguments and secrets, not {unknown}"]
    for name, path in tool.response.pick.items():
        if any(not part for part in path.split(".")):
            problems[f"response.pick.{name}"] = ["a dotted path such as `data.items.0.id`"]
    return problems


def parse_tool(document: Mapping[str, Any], *, origin: str = "<api>") -> ToolDef:
    """Validate a tool document; DefinitionError names the origin and field."""
    return load_with(ToolSchema(), document, origin=origin, checks=_problems)


def tool_files(directory: Path) -> list[Path]:
    folder = directory / "tools"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_tool_file(path: Path) -> ToolDef:
    tool = parse_tool(read_document(path), origin=str(path))
    check_file_name(tool.name, path)
    return tool

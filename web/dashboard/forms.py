"""A run's start form generated from the workflow's input JSON Schema, and its submission read
back into the `inputs` object the API takes.

Only what a form can say is turned into typed fields (strings, numbers, integers, booleans,
enums); objects, arrays and anything else get a JSON text box, and a schema without properties
gets one box for the whole `inputs` object. Conversion errors use the API's field names
(`inputs.<name>`), and everything else is left to the engine's own schema check, so the form
shows exactly the messages a 422 from the API would carry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent33.errors import ValidationFailed
from web.limits import check_json_bytes

WHOLE = "inputs"  # the field name when the schema lists no properties
SCALARS = {"string", "integer", "number", "boolean"}


@dataclass(frozen=True)
class Field:
    """One form control: `kind` is string, integer, number, boolean, enum or json."""

    name: str
    kind: str
    required: bool
    default: str
    description: str
    choices: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The API's error key for this field."""
        return WHOLE if self.name == WHOLE else f"{WHOLE}.{self.name}"


def _kind(schema: Mapping[str, Any]) -> str:
    if isinstance(schema.get("enum"), list) and all(
        isinstance(choice, str) for choice in schema["enum"]
    ):
        return "enum"
    kind = schema.get("type")
    return kind if isinstance(kind, str) and kind in SCALARS else "json"


def _shown(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    if kind == "boolean":
        return "true" if value else ""
    return str(value)


def fields_for(schema: Mapping[str, Any]) -> list[Field]:
    """The form's controls, in the schema's property order."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return [Field(WHOLE, "json", False, "{}", "All inputs as one JSON object")]
    required = set(schema.get("required") or [])
    found = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, Mapping) else {}
        kind = _kind(prop)
        found.append(
            Field(
                name=str(name),
                kind=kind,
                required=name in required,
                default=_shown(kind, prop.get("default")),
                description=str(prop.get("description") or prop.get("title") or ""),
                choices=tuple(prop["enum"]) if kind == "enum" else (),
            )
        )
    return found


def _convert(field: Field, raw: str) -> Any:
    """The typed value of one submitted control; raises ValueError with the API's wording.

    Numbers and JSON first pass the API's body limits (`web.limits`): no deep nesting, no
    30+ digit numbers, no NaN or Infinity, which PostgreSQL's JSON could not store anyway.
    """
    if field.kind in ("integer", "number", "json"):
        try:
            check_json_bytes(raw.encode())
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None
    if field.kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not of type 'integer'") from None
    if field.kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not of type 'number'") from None
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number")
        return int(number) if number.is_integer() and "." not in raw else number
    if field.kind == "json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return raw


def read(fields: list[Field], form: Mapping[str, str]) -> dict[str, Any]:
    """The `inputs` object from a submitted form; an empty optional control is left out (so
    the workflow's defaults apply). Raises ValidationFailed keyed like the API's errors."""
    if len(fields) == 1 and fields[0].name == WHOLE:
        raw = form.get(WHOLE, "").strip() or "{}"
        try:
            value = _convert(fields[0], raw)
        except ValueError as exc:
            raise ValidationFailed(f"inputs: {exc}", fields={WHOLE: [str(exc)]}) from None
        if not isinstance(value, dict):
            message = f"{raw!r} is not of type 'object'"
            raise ValidationFailed(f"inputs: {message}", fields={WHOLE: [message]})
        return value
    inputs: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for field in fields:
        if field.kind == "boolean":
            inputs[field.name] = form.get(field.name) in ("true", "on", "1")
            continue
        raw = form.get(field.name, "")
        if field.kind != "string":
            raw = raw.strip()
        if raw == "":
            continue  # absent: defaults apply, and the schema's `required` check names it
        try:
            inputs[field.name] = _convert(field, raw)
        except ValueError as exc:
            problems[field.key] = [str(exc)]
    if problems:
        first = next(iter(problems))
        raise ValidationFailed(f"{first}: {problems[first][0]}", fields=problems)
    return inputs


def errors_by_field(fields: list[Field], errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The API's error keys moved onto the form's controls: `inputs.<name>` (and deeper paths)
    to that control, and the schema's "'<name>' is a required property" to the missing one;
    whatever matches no control stays under `inputs`."""
    names = {field.name for field in fields}
    placed: dict[str, list[str]] = {}
    for key, messages in errors.items():
        for message in messages:
            target = WHOLE
            head = key.split(".")[1] if key.startswith(f"{WHOLE}.") else None
            if head in names:
                target = head
            elif key == WHOLE:
                for name in names:
                    if message == f"{name!r} is a required property":
                        target = name
            placed.setdefault(target, []).append(message)
    return placed

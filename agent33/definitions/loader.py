"""Load workflow definitions from JSON/YAML; every error names the file, step and field."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from marshmallow import Schema, ValidationError

from agent33.definitions.graph import graph_problems
from agent33.definitions.limits import size_problems
from agent33.definitions.models import WorkflowDef
from agent33.definitions.schemas import WorkflowSchema
from agent33.errors import DefinitionError

SUFFIXES = (".yaml", ".yml", ".json")
T = TypeVar("T")


def _flatten(errors: Any, raw: Mapping[str, Any], prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested errors -> {"steps.<id>.<field>": [...]} (step index -> step id)."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, list):
        flat[prefix or "_schema"] = [str(e) for e in errors]
        return flat
    if not isinstance(errors, dict):
        flat[prefix or "_schema"] = [str(errors)]
        return flat
    for key, value in errors.items():
        part = str(key)
        if prefix == "steps" and isinstance(key, int):
            steps = raw.get("steps")
            if isinstance(steps, list) and key < len(steps) and isinstance(steps[key], dict):
                part = str(steps[key].get("id") or key)
        path = f"{prefix}.{part}" if prefix else part
        flat.update(_flatten(value, raw, path))
    return flat


def _describe(origin: str, problems: Mapping[str, list[str]]) -> str:
    first_path, first = next(iter(problems.items()))
    parts = first_path.split(".")
    where = (
        f"step {parts[1]!r} field {'.'.join(parts[2:]) or 'id'!r}"
        if parts[0] == "steps" and len(parts) > 1
        else f"field {first_path!r}"
    )
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{origin}: {where}: {'; '.join(first)}{more}"


def parse_workflow(document: Mapping[str, Any], *, origin: str = "<api>") -> WorkflowDef:
    """Validate a workflow document (schema, then graph); raise DefinitionError on problems."""
    if not isinstance(document, Mapping):
        raise DefinitionError(
            f"{origin}: a workflow must be a mapping", fields={"_schema": ["not a mapping"]}
        )
    too_large = size_problems(document)
    if too_large:
        raise DefinitionError(_describe(origin, too_large), fields={"file": origin, **too_large})
    return load_with(WorkflowSchema(), document, origin=origin, checks=graph_problems)


def load_with(
    schema: Schema,
    document: Mapping[str, Any],
    *,
    origin: str,
    checks: Callable[[T], dict[str, list[str]]],
) -> T:
    """Schema, then the definition's own checks; every problem named by file and field path."""
    try:
        value: T = schema.load(dict(document))
    except ValidationError as exc:
        problems = _flatten(exc.messages, document)
        raise DefinitionError(
            _describe(origin, problems), fields={"file": origin, **problems}
        ) from None
    problems = checks(value)
    if problems:
        raise DefinitionError(_describe(origin, problems), fields={"file": origin, **problems})
    return value


def check_file_name(name: str, path: Path) -> None:
    """One definition per file, and its `name` is the file stem."""
    if name != path.stem:
        raise DefinitionError(
            f"{path}: field 'name': {name!r} must equal the file name {path.stem!r}",
            fields={"file": str(path), "name": ["must equal the file stem"]},
        )


def read_document(path: Path) -> dict[str, Any]:
    """Parse one JSON/YAML file into a mapping, naming the file on syntax errors."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DefinitionError(
            f"{path}: cannot be parsed: {exc}", fields={"file": str(path)}
        ) from None
    if not isinstance(data, dict):
        raise DefinitionError(
            f"{path}: the top level must be a mapping", fields={"file": str(path)}
        )
    return data


def load_workflow_file(path: Path) -> tuple[WorkflowDef, dict[str, Any]]:
    """The validated definition and the raw document; the name must equal the file stem."""
    document = read_document(path)
    workflow = parse_workflow(document, origin=str(path))
    check_file_name(workflow.name, path)
    return workflow, document


def workflow_files(directory: Path) -> list[Path]:
    folder = directory / "workflows"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())

"""Stored workflow versions: save, look up by (name, version), and sync the shipped files."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from agent33.db.models import WorkflowDefinition
from agent33.definitions.loader import load_workflow_file, parse_workflow, workflow_files
from agent33.definitions.models import WorkflowDef
from agent33.definitions.versions import (
    ParsedCache,
    find_version,
    latest_versions,
    origin_of,
    save_version,
)
from agent33.errors import NotFound

Validator = Callable[[WorkflowDef, str], None]


def save_workflow(
    *, session: Session, workflow: WorkflowDef, document: dict[str, Any], source: str = "api"
) -> tuple[WorkflowDefinition, bool]:
    """Store a version: an identical re-save is a no-op, a changed body is a conflict."""
    return save_version(
        session=session,
        model=WorkflowDefinition,
        kind="workflow",
        name=workflow.name,
        version=workflow.version,
        description=workflow.description,
        document=document,
        source=source,
    )


def get_workflow(*, session: Session, name: str, version: int | None = None) -> WorkflowDefinition:
    """A stored version (the latest when `version` is None); NotFound names what is missing."""
    return find_version(
        session=session, model=WorkflowDefinition, kind="workflow", name=name, version=version
    )


def is_latest(*, session: Session, row: WorkflowDefinition) -> bool:
    """Whether no stored version of this workflow is newer (its declared schedules apply)."""
    return get_workflow(session=session, name=row.name).version == row.version


def list_workflows(*, session: Session) -> list[WorkflowDefinition]:
    """The latest version of every workflow, by name."""
    return latest_versions(session=session, model=WorkflowDefinition)


_parsed: ParsedCache[WorkflowDef] = ParsedCache()


def definition_of(row: WorkflowDefinition) -> WorkflowDef:
    """The parsed definition of a stored version (parsed once per process)."""
    return _parsed.get(row.id, lambda: parse_workflow(row.spec, origin=origin_of(row)))


def definition_by_id(*, session: Session, workflow_id: uuid.UUID) -> WorkflowDef:
    """A run's definition by its stored row id; a cached one costs no query."""
    cached = _parsed.peek(workflow_id)
    if cached is not None:
        return cached
    row = session.get(WorkflowDefinition, workflow_id)
    if row is None:
        raise NotFound(f"workflow version {workflow_id} not found", fields={"workflow": ["gone"]})
    return definition_of(row)


def sync_directory(
    *, session: Session, directory: Path, validator: Validator | None = None
) -> list[tuple[WorkflowDefinition, bool]]:
    """Store every shipped workflow file (validated) whose version is not stored yet."""
    stored = []
    for path in workflow_files(directory):
        workflow, document = load_workflow_file(path)
        if validator is not None:
            validator(workflow, str(path))
        stored.append(
            save_workflow(session=session, workflow=workflow, document=document, source=str(path))
        )
    return stored

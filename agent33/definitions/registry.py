"""Stored workflow versions: save, look up by (name, version), and sync the shipped files."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import WorkflowDefinition
from agent33.definitions.loader import load_workflow_file, parse_workflow, workflow_files
from agent33.definitions.models import WorkflowDef
from agent33.errors import Conflict, NotFound

Validator = Callable[[WorkflowDef, str], None]


def checksum(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def save_workflow(
    *, session: Session, workflow: WorkflowDef, document: dict[str, Any], source: str = "api"
) -> tuple[WorkflowDefinition, bool]:
    """Store a version: an identical re-save is a no-op, a changed body is a conflict."""
    digest = checksum(document)
    existing = session.scalar(
        select(WorkflowDefinition).where(
            WorkflowDefinition.name == workflow.name, WorkflowDefinition.version == workflow.version
        )
    )
    if existing is not None:
        if existing.checksum != digest:
            raise Conflict(
                f"workflow {workflow.name!r} version {workflow.version} already exists with a "
                "different body; bump `version`",
                fields={"version": ["already exists with a different body"]},
            )
        return existing, False
    row = WorkflowDefinition(
        name=workflow.name,
        version=workflow.version,
        description=workflow.description,
        spec={**document, "version": workflow.version},
        source=source,
        checksum=digest,
    )
    session.add(row)
    session.flush()
    return row, True


def get_workflow(*, session: Session, name: str, version: int | None = None) -> WorkflowDefinition:
    """A stored version (the latest when `version` is None); NotFound names what is missing."""
    query = select(WorkflowDefinition).where(WorkflowDefinition.name == name)
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    row = session.scalar(query.order_by(WorkflowDefinition.version.desc()).limit(1))
    if row is None:
        what = f"workflow {name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"{what} not found", fields={"workflow": [f"{what} not found"]})
    return row


def list_workflows(*, session: Session) -> list[WorkflowDefinition]:
    """The latest version of every workflow, by name."""
    latest = (
        select(WorkflowDefinition.name, func.max(WorkflowDefinition.version).label("version"))
        .group_by(WorkflowDefinition.name)
        .subquery()
    )
    query = (
        select(WorkflowDefinition)
        .join(
            latest,
            (WorkflowDefinition.name == latest.c.name)
            & (WorkflowDefinition.version == latest.c.version),
        )
        .order_by(WorkflowDefinition.name)
    )
    return list(session.scalars(query))


_parsed: OrderedDict[tuple[uuid.UUID, str], WorkflowDef] = OrderedDict()
_parsed_lock = threading.Lock()
PARSED_CACHE_SIZE = 256


def definition_of(row: WorkflowDefinition) -> WorkflowDef:
    """The parsed definition of a stored version; versions never change, so parsing is cached."""
    key = (row.id, row.checksum)
    with _parsed_lock:
        cached = _parsed.get(key)
        if cached is not None:
            _parsed.move_to_end(key)
            return cached
    parsed = parse_workflow(row.spec, origin=f"{row.source} ({row.name} v{row.version})")
    with _parsed_lock:
        _parsed[key] = parsed
        while len(_parsed) > PARSED_CACHE_SIZE:
            _parsed.popitem(last=False)
    return parsed


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

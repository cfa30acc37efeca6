"""Stored definition versions (workflows and agents alike): save, find, list the latest.

A (name, version) never changes once stored: re-saving the same body is a no-op, a different
body under the same version is a conflict, so a version a run used stays what it was.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import AgentDefinition, WorkflowDefinition
from agent33.errors import Conflict, NotFound

Row = TypeVar("Row", WorkflowDefinition, AgentDefinition)


def checksum(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def require_newer(
    *, session: Session, model: type[Row], kind: str, name: str, version: int
) -> None:
    """A new version must be greater than every stored one, so a version a run used never
    changes (409 naming `version` otherwise)."""
    latest = session.scalar(select(func.max(model.version)).where(model.name == name))
    if latest is not None and version <= latest:
        message = f"must be greater than the stored version {latest}"
        raise Conflict(f"{kind} {name!r}: `version` {message}", fields={"version": [message]})


def save_version(
    *,
    session: Session,
    model: type[Row],
    kind: str,
    name: str,
    version: int,
    description: str,
    document: dict[str, Any],
    source: str,
) -> tuple[Row, bool]:
    """(row, created): an identical re-save returns the stored row, created=False."""
    digest = checksum(document)
    existing = session.scalar(select(model).where(model.name == name, model.version == version))
    if existing is not None:
        if existing.checksum != digest:
            raise Conflict(
                f"{kind} {name!r} version {version} already exists with a different body; "
                "bump `version`",
                fields={"version": ["already exists with a different body"]},
            )
        return existing, False
    row = model(
        name=name,
        version=version,
        description=description,
        spec={**document, "version": version},
        source=source,
        checksum=digest,
    )
    session.add(row)
    session.flush()
    return row, True


def origin_of(row: WorkflowDefinition | AgentDefinition) -> str:
    """Where a stored version came from, as parse errors name it."""
    return f"{row.source} ({row.name} v{row.version})"


def find_version(
    *, session: Session, model: type[Row], kind: str, name: str, version: int | None = None
) -> Row:
    """The stored version (the latest when `version` is None); NotFound names what is missing."""
    query = select(model).where(model.name == name)
    if version is not None:
        query = query.where(model.version == version)
    row = session.scalar(query.order_by(model.version.desc()).limit(1))
    if row is None:
        what = f"{kind} {name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"{what} not found", fields={kind: [f"{what} not found"]})
    return row


def latest_versions(*, session: Session, model: type[Row]) -> list[Row]:
    """The latest version of every name, ordered by name."""
    latest = (
        select(model.name, func.max(model.version).label("version")).group_by(model.name).subquery()
    )
    query = select(model).join(
        latest, (model.name == latest.c.name) & (model.version == latest.c.version)
    )
    return list(session.scalars(query.order_by(model.name)))


def version_numbers(*, session: Session, model: type[Row], name: str) -> list[int]:
    """Every stored version of `name`, newest first (empty when none)."""
    query = select(model.version).where(model.name == name).order_by(model.version.desc())
    return [int(version) for version in session.scalars(query)]


T = TypeVar("T")


class ParsedCache(Generic[T]):
    """Parsed definitions by stored row id: a stored version never changes (a changed body is a
    conflict, a re-created one gets a new id), so each row is parsed once per process."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[uuid.UUID, T] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: uuid.UUID) -> T | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get(self, key: uuid.UUID, parse: Callable[[], T]) -> T:
        cached = self.peek(key)
        if cached is not None:
            return cached
        parsed = parse()
        with self._lock:
            self._items[key] = parsed
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return parsed

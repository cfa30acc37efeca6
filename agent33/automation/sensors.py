"""Sensors: validate, store, list and sync their definitions (`definitions/sensors/*.yaml`).

A sensor is checked by beat (`agent33.automation.sensor_tick`) or, for kind `event`, fed by
`POST /api/v1/events/<name>` (`agent33.automation.events`). Each event starts one run of the
sensor's workflow under a unique idempotency key, so a second beat or a repeated post cannot
start it twice. Every function takes `session=` and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.automation.sensor_schema import SensorSchema
from agent33.config import Settings
from agent33.db.models import Sensor
from agent33.definitions.loader import SUFFIXES, check_file_name, load_with, read_document
from agent33.definitions.registry import get_workflow
from agent33.engine.expressions import check_syntax
from agent33.errors import Conflict, NotFound, ValidationFailed
from agent33.security.outbound import OutboundFailed, check_url
from agent33.security.paths import UnsafePath, safe_path


def parse_sensor(document: Mapping[str, Any], *, origin: str = "<api>") -> dict[str, Any]:
    """The schema-checked document; DefinitionError naming the origin and the field."""
    return load_with(SensorSchema(), document, origin=origin, checks=_static_problems)


def glob_problem(pattern: str) -> str | None:
    """Why a glob cannot be watched safely, or None: relative, no `..`, `**` whole."""
    if "\x00" in pattern:
        return "contains a NUL byte"
    path = PurePosixPath(pattern)
    if path.is_absolute() or pattern.startswith("~"):
        return "must be relative to the directory"
    if ".." in path.parts:
        return "must not contain '..'"
    if any("**" in part and part != "**" for part in path.parts):
        return "'**' must be a whole path component"
    if not path.parts:
        return "matches nothing"
    return None


def check_static(spec: dict[str, Any]) -> None:
    """The checks a schema-loaded spec still needs (glob, templates); ValidationFailed."""
    problems = _static_problems(spec)
    if problems:
        first = next(iter(problems))
        raise ValidationFailed(f"sensor field {first!r}: {problems[first][0]}", fields=problems)


def _static_problems(spec: dict[str, Any]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    pattern = spec.get("glob")
    if pattern is not None:
        problem = glob_problem(pattern)
        if problem:
            problems["glob"] = [problem]
    for key, value in spec["inputs"].items():
        for message in check_syntax(value):
            problems.setdefault(f"inputs.{key}", []).append(message)
    return problems


def check_sensor(*, session: Session, settings: Settings, spec: dict[str, Any]) -> None:
    """What the schema cannot know: the workflow is stored, paths lie under AGENT33_FILE_ROOTS,
    the URL passes the outbound allowlist. ValidationFailed naming each field."""
    problems: dict[str, list[str]] = {}
    try:
        get_workflow(session=session, name=spec["workflow"])
    except NotFound:
        problems["workflow"] = [f"workflow {spec['workflow']!r} is not stored"]
    for field in ("directory", "path"):
        if field in spec:
            try:
                safe_path(settings.file_roots, spec[field])
            except UnsafePath as exc:
                problems[field] = [exc.message]
    if "url" in spec:
        try:
            check_url(spec["url"], settings.http_allowlist)
        except OutboundFailed as exc:
            problems["url"] = [exc.message]
    if problems:
        first = next(iter(problems))
        raise ValidationFailed(f"sensor field {first!r}: {problems[first][0]}", fields=problems)


def _apply(row: Sensor, spec: dict[str, Any], source: str) -> None:
    changed = row.spec != spec
    row.kind = spec["kind"]
    row.workflow = spec["workflow"]
    row.event = spec.get("event")
    row.enabled = spec["enabled"]
    row.spec = spec
    row.source = source
    if changed:
        row.state = {}  # a new target starts clean; the run keys still stop repeats


def create_sensor(
    *, session: Session, settings: Settings, spec: dict[str, Any], source: str = "api"
) -> Sensor:
    """Store a new sensor; Conflict (409 naming `name`) when the name is taken."""
    check_sensor(session=session, settings=settings, spec=spec)
    if session.scalar(select(Sensor.id).where(Sensor.name == spec["name"])) is not None:
        raise Conflict(
            f"sensor {spec['name']!r} already exists", fields={"name": ["already exists"]}
        )
    row = Sensor(name=spec["name"], state={})
    _apply(row, spec, source)
    session.add(row)
    session.flush()
    return row


def get_sensor(*, session: Session, name: str, lock: bool = False) -> Sensor:
    query = select(Sensor).where(Sensor.name == name)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"sensor {name!r} not found", fields={"sensor": ["not found"]})
    return row


def list_sensors(*, session: Session, kind: str | None = None) -> list[Sensor]:
    query = select(Sensor).order_by(Sensor.name)
    if kind:
        query = query.where(Sensor.kind == kind)
    return list(session.scalars(query))


def delete_sensor(*, session: Session, name: str) -> None:
    session.delete(get_sensor(session=session, name=name, lock=True))
    session.flush()


def sensor_files(directory: Path) -> list[Path]:
    folder = directory / "sensors"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def sync_sensors(*, session: Session, settings: Settings, directory: Path) -> list[Sensor]:
    """Store every `sensors/NAME.yaml` (validated; the name is the file stem): new ones are
    created, changed ones updated in place (their history kept), unchanged ones left alone."""
    stored = []
    for path in sensor_files(directory):
        spec = parse_sensor(read_document(path), origin=str(path))
        check_file_name(spec["name"], path)
        try:
            check_sensor(session=session, settings=settings, spec=spec)
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"{path}: {exc.message}", fields={"file": str(path), **exc.fields}
            ) from None
        row = session.scalar(select(Sensor).where(Sensor.name == spec["name"]).with_for_update())
        if row is None:
            row = Sensor(name=spec["name"], state={})
            session.add(row)
        _apply(row, spec, str(path))
        stored.append(row)
    session.flush()
    return stored

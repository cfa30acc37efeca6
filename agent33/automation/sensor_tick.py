"""One beat tick over the sensors (`agent33.maintenance.poll_sensors`).

Cheap: one indexed query for the sensors that are due, then one short transaction per sensor.
Safe with two beats: a sensor row is taken with SKIP LOCKED (the other tick moves on), and every
event's run is keyed by the event (`agent33.automation.sensor_runs`), so even two ticks that saw the
same file with the same stale state start one run. A sensor that fails records its error and
the tick goes on with the others.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from agent33.automation.sensor_runs import Fired, fire, run_key
from agent33.automation.sensor_schema import FILE_CHANGE, FRESHNESS
from agent33.automation.watchers import last_modified, scan_directory
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Sensor
from agent33.errors import Agent33Error

log = structlog.get_logger(__name__)
MAX_ERROR_CHARS = 2000


@dataclass
class TickResult:
    checked: int = 0
    fired: int = 0
    failed: int = 0
    outbox_ids: list[int] = field(default_factory=list)


Check = Callable[[Session, Settings, Sensor], tuple[list[Fired], list[str]]]


def tick(settings: Settings, *, now: dt.datetime | None = None) -> TickResult:
    """Check every due sensor once; returns what to publish after the commits."""
    moment = now or utcnow()
    result = TickResult()
    with session_scope() as session:
        due = list(
            session.scalars(
                select(Sensor.id).where(
                    Sensor.enabled.is_(True),
                    Sensor.kind.in_(tuple(CHECKS)),
                    or_(Sensor.next_check_at.is_(None), Sensor.next_check_at <= moment),
                )
            )
        )
    for sensor_id in due:
        checked = check_one(settings, sensor_id, moment)
        if checked is None:
            continue
        fired, failed = checked
        result.checked += 1
        result.fired += sum(1 for f in fired if f.created)
        result.failed += int(failed)
        result.outbox_ids.extend(i for f in fired for i in f.outbox_ids)
    return result


def check_one(
    settings: Settings, sensor_id: uuid.UUID, now: dt.datetime
) -> tuple[list[Fired], bool] | None:
    """Check one sensor in its own transaction; None when another tick holds or just did it."""
    with session_scope() as session:
        query = select(Sensor).where(Sensor.id == sensor_id, Sensor.enabled.is_(True))
        row = session.scalar(query.with_for_update(skip_locked=True))
        if row is None or (row.next_check_at is not None and row.next_check_at > now):
            return None
        row.checks += 1
        row.last_check_at = now
        row.next_check_at = now + dt.timedelta(seconds=float(row.spec.get("interval", 0)))
        try:
            with session.begin_nested():
                fired, errors = CHECKS[row.kind](session, settings, row)
        except Exception as exc:  # noqa: BLE001 - one broken sensor must not stop the others
            fired, errors = [], [_describe(exc)]
            if not isinstance(exc, Agent33Error | OSError):
                log.exception("sensor.check_failed", sensor=row.name)
        if errors:
            row.last_error = "; ".join(errors)[:MAX_ERROR_CHARS]
            row.last_error_at = now
            log.warning("sensor.error", sensor=row.name, error=row.last_error)
        return fired, bool(errors)


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, Agent33Error) else str(exc)
    return message or type(exc).__name__


def _fire_each(
    session: Session,
    settings: Settings,
    row: Sensor,
    events: list[tuple[str, dict[str, Any]]],
) -> tuple[list[Fired], list[str]]:
    """Fire each (identity, event) in its own savepoint: one bad event does not undo the rest."""
    fired: list[Fired] = []
    errors: list[str] = []
    for identity, event in events:
        try:
            with session.begin_nested():
                fired.append(
                    fire(
                        session=session,
                        settings=settings,
                        sensor=row,
                        event=event,
                        key=run_key("sensor", row.name, identity),
                        trigger={"kind": "sensor", "event": event},
                    )
                )
        except Agent33Error as exc:
            errors.append(f"{event.get('name') or event.get('type')}: {exc.message}")
    return fired, errors


def _check_files(
    session: Session, settings: Settings, row: Sensor
) -> tuple[list[Fired], list[str]]:
    reported = dict(row.state.get("files", {}))
    changes, keep = scan_directory(settings, row.spec, reported)
    fired, errors = [], []
    for change in changes:
        done, failed = _fire_each(session, settings, row, [(change.identity, change.event())])
        fired += done
        errors += failed
        if done:  # reported; a failed one stays unreported and is tried on the next check
            keep[change.name] = change.fingerprint
    row.state = {**row.state, "files": keep}
    return fired, errors


def _check_freshness(
    session: Session, settings: Settings, row: Sensor
) -> tuple[list[Fired], list[str]]:
    """Fire once when the source turns stale; it must turn fresh before it can fire again."""
    spec, state = row.spec, dict(row.state)
    modified = last_modified(session=session, settings=settings, spec=spec)
    now = utcnow()
    age = None if modified is None else (now - modified).total_seconds()
    if modified is not None and age is not None and age <= float(spec["max_age"]):
        row.state = {"stale": False, "modified": modified.isoformat()}
        return [], []
    if state.get("stale"):
        return [], []  # this staleness episode already fired
    # The episode's identity: the change that went stale (or, when the source is missing, the
    # last change seen before), the same for every tick that sees this episode.
    episode = modified.isoformat() if modified else f"missing after {state.get('modified')}"
    source = spec.get("path") or spec.get("url") or spec.get("collection")
    event = {
        "type": "stale",
        "source": source,
        "modified": modified.isoformat() if modified else None,
        "age": age,
        "max_age": spec["max_age"],
    }
    fired, errors = _fire_each(session, settings, row, [(f"stale\0{episode}", event)])
    if fired:
        row.state = {**state, "stale": True, "episode": episode}
    return fired, errors


CHECKS: dict[str, Check] = {FILE_CHANGE: _check_files, FRESHNESS: _check_freshness}

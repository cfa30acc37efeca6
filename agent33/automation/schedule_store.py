"""Stored schedules: create, change, pause, delete, and the ones a workflow declares.

Functions take `session=` and never commit. A schedule's inputs are checked against its
workflow's input schema when it is saved, so a bad one is refused then, not at 3 a.m.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.automation.schedule_spec import ScheduleSpecSchema, check_timing
from agent33.automation.schedules import Timing, next_slot
from agent33.db.base import utcnow
from agent33.db.models import Schedule
from agent33.definitions.models import WorkflowDef
from agent33.definitions.registry import definition_of, get_workflow
from agent33.engine.service import validate_inputs
from agent33.errors import Conflict, NotFound, ValidationFailed

TIMING_FIELDS = ("cron", "timezone", "every", "start_at", "end_at")
SPEC_FIELDS = ("workflow", "inputs", "overlap", "catchup", "paused", *TIMING_FIELDS)


def timing_of(schedule: Schedule) -> Timing:
    return Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        every=schedule.every,
        anchor=(schedule.start_at or schedule.created_at).replace(microsecond=0),
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )


def get_schedule(*, session: Session, name: str, lock: bool = False) -> Schedule:
    query = select(Schedule).where(Schedule.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"schedule {name!r} not found", fields={"name": ["not found"]})
    return found


def list_schedules(*, session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).order_by(Schedule.name)))


def create_schedule(
    *, session: Session, spec: dict[str, Any], source: str = "api", now: dt.datetime | None = None
) -> Schedule:
    """Store a checked spec (as ScheduleSpecSchema loads it); Conflict when the name is taken."""
    if session.scalar(select(Schedule.id).where(Schedule.name == spec["name"])) is not None:
        raise Conflict(f"schedule {spec['name']!r} exists", fields={"name": ["already exists"]})
    check_workflow_inputs(session=session, workflow=spec["workflow"], inputs=spec["inputs"])
    schedule = Schedule(name=spec["name"], source=source, created_at=now or utcnow())
    for name in SPEC_FIELDS:
        setattr(schedule, name, spec[name])
    _plan_next(schedule, now or utcnow())
    session.add(schedule)
    session.flush()
    return schedule


def update_schedule(
    *, session: Session, schedule: Schedule, changes: dict[str, Any], now: dt.datetime | None = None
) -> Schedule:
    """Apply a partial spec; the merged schedule is checked as a whole. Setting `cron` clears
    `every` (and the reverse) unless the patch sets both."""
    merged = {name: getattr(schedule, name) for name in SPEC_FIELDS}
    merged.update(changes)
    if changes.get("cron") is not None and "every" not in changes:
        merged["every"] = None
    if changes.get("every") is not None and "cron" not in changes:
        merged["cron"] = None
    try:
        check_timing(merged)
    except ma.ValidationError as exc:
        raise _failed(exc) from None
    check_workflow_inputs(session=session, workflow=merged["workflow"], inputs=merged["inputs"])
    retime = any(merged[name] != getattr(schedule, name) for name in TIMING_FIELDS)
    for name in SPEC_FIELDS:
        setattr(schedule, name, merged[name])
    if retime:
        _plan_next(schedule, now or utcnow())
    session.flush()
    return schedule


def set_paused(
    *, session: Session, schedule: Schedule, paused: bool, now: dt.datetime | None = None
) -> Schedule:
    """Pause, or resume from now: slots that fell while paused are not caught up."""
    if schedule.paused != paused:
        schedule.paused = paused
        if not paused:
            _plan_next(schedule, now or utcnow())
        session.flush()
    return schedule


def check_workflow_inputs(*, session: Session, workflow: str, inputs: dict[str, Any]) -> None:
    """The workflow must exist and accept `inputs` (its latest version); 400 naming the field."""
    try:
        row = get_workflow(session=session, name=workflow)
    except NotFound:
        raise ValidationFailed(
            f"unknown workflow {workflow!r}", fields={"workflow": [f"no workflow {workflow!r}"]}
        ) from None
    validate_inputs(definition_of(row), inputs)


def sync_declared(
    *, session: Session, workflow: WorkflowDef, now: dt.datetime | None = None
) -> list[Schedule]:
    """Make the schedules a workflow's `schedules:` declares exist as declared (pause state and
    fire history kept); drop the ones it no longer declares. Errors name `schedules.<i>.<field>`."""
    wanted: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(workflow.schedules):
        try:
            spec = ScheduleSpecSchema().load({**entry, "workflow": workflow.name})
        except ma.ValidationError as exc:
            raise _failed(exc, prefix=f"schedules.{index}.") from None
        wanted[spec["name"]] = spec
    owned = {
        s.name: s
        for s in session.scalars(
            select(Schedule).where(
                Schedule.workflow == workflow.name, Schedule.source == "workflow"
            )
        )
    }
    for name, schedule in owned.items():
        if name not in wanted:
            session.delete(schedule)
    kept = []
    for index, (name, spec) in enumerate(wanted.items()):
        try:
            if name in owned:
                changes = {k: v for k, v in spec.items() if k not in ("name", "paused")}
                kept.append(
                    update_schedule(session=session, schedule=owned[name], changes=changes, now=now)
                )
            else:
                kept.append(create_schedule(session=session, spec=spec, source="workflow", now=now))
        except ValidationFailed as exc:
            raise ValidationFailed(
                exc.message, fields={f"schedules.{index}.{k}": v for k, v in exc.fields.items()}
            ) from None
    session.flush()
    return kept


def resync_declared(*, session: Session, workflow: str) -> None:
    """After versions of `workflow` were deleted: its declared schedules follow the latest
    version left, or go when none is left."""
    try:
        latest = get_workflow(session=session, name=workflow)
    except NotFound:
        for schedule in session.scalars(
            select(Schedule).where(Schedule.workflow == workflow, Schedule.source == "workflow")
        ):
            session.delete(schedule)
        return
    sync_declared(session=session, workflow=definition_of(latest))


def _plan_next(schedule: Schedule, now: dt.datetime) -> None:
    """The first slot from now on: a new, changed or resumed schedule does not catch up."""
    schedule.next_fire_at = next_slot(timing_of(schedule), now)


def _failed(exc: ma.ValidationError, prefix: str = "") -> ValidationFailed:
    messages = exc.messages if isinstance(exc.messages, dict) else {"schedule": exc.messages}
    fields = {f"{prefix}{k}": v if isinstance(v, list) else [str(v)] for k, v in messages.items()}
    first = next(iter(fields), "schedule")
    return ValidationFailed(f"{first}: {fields.get(first, ['invalid'])[0]}", fields=fields)

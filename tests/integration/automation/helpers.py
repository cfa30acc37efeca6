"""Test helpers for automation: schedules made and read straight through agent33.automation,
a workflow sensors can start, and how tests count the runs each started (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from agent33.automation.schedule_spec import ScheduleSpecSchema
from agent33.automation.schedule_store import create_schedule
from agent33.db import session_scope
from agent33.db.models import Run, Schedule, ScheduleFire
from tests.integration.engine.helpers import save

QUICK = {
    "name": "quick",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "steps": [{"id": "only", "action": "transform", "with": {"value": 1}}],
}


def make_schedule(now: dt.datetime, **fields: Any) -> uuid.UUID:
    save(QUICK)
    spec = ScheduleSpecSchema().load({"name": "every-5", "workflow": "quick", **fields})
    with session_scope() as session:
        return create_schedule(session=session, spec=spec, now=now).id


def fires(schedule_id: uuid.UUID) -> list[ScheduleFire]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ScheduleFire)
                .where(ScheduleFire.schedule_id == schedule_id)
                .order_by(ScheduleFire.fire_time)
            )
        )


def runs_of(schedule_name: str) -> list[Run]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Run)
                .where(Run.trigger["schedule"].as_string() == schedule_name)
                .order_by(Run.created_at)
            )
        )


def finish_runs(state: str = "succeeded") -> None:
    """End every unfinished run as if its steps had run (the tick only reads run states)."""
    with session_scope() as session:
        for run in session.scalars(select(Run).where(Run.state.in_(("pending", "running")))):
            run.state = state


def schedule_row(schedule_id: uuid.UUID) -> Schedule:
    with session_scope() as session:
        found = session.get(Schedule, schedule_id)
        assert found is not None
        return found


ON_FILE: dict[str, Any] = {
    "name": "on_file",
    "version": 1,
    "inputs": {
        "type": "object",
        "required": ["path", "change"],
        "properties": {"path": {"type": "string"}, "change": {"type": "string"}},
        "additionalProperties": False,
    },
    "steps": [{"id": "note", "action": "transform", "with": {"seen": "{{ inputs.path }}"}}],
}


def runs_by(sensor: str) -> list[Run]:
    """Runs a sensor started, oldest first (by the trigger the run records)."""
    with session_scope() as session:
        runs = session.scalars(select(Run).order_by(Run.created_at))
        return [r for r in runs if (r.trigger or {}).get("sensor") == sensor]

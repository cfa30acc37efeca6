"""Schedules made and read straight through agent33.automation (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from agent33.automation.spec import ScheduleSpecSchema
from agent33.automation.store import create_schedule
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

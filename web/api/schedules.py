"""`/api/v1/schedules`: workflows run on a cron or an interval by beat's `fire_schedules` tick."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.automation.schedule_spec import ScheduleSpecSchema
from agent33.automation.schedule_store import (
    create_schedule,
    get_schedule,
    list_schedules,
    set_paused,
    timing_of,
    update_schedule,
)
from agent33.automation.schedule_tick import trigger_now
from agent33.automation.schedules import upcoming
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Schedule
from agent33.security import scopes as sc
from tasks.dispatch import revoke
from web.auth import require_scopes
from web.extensions import Blueprint, get_settings, list_schema
from web.outbox import publish

UPCOMING_MAX = 100

blp = Blueprint(
    "schedules", __name__, url_prefix="/api/v1/schedules", description="Workflow schedules"
)


class ScheduleSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    workflow = ma.fields.String()
    inputs = ma.fields.Dict()
    cron = ma.fields.String(allow_none=True)
    timezone = ma.fields.String()
    every = ma.fields.Integer(allow_none=True)
    overlap = ma.fields.String()
    catchup = ma.fields.String()
    start_at = ma.fields.DateTime(allow_none=True)
    end_at = ma.fields.DateTime(allow_none=True)
    paused = ma.fields.Boolean()
    source = ma.fields.String(metadata={"description": "`api`, or `workflow` when declared in one"})
    last_fire_at = ma.fields.DateTime(allow_none=True)
    next_fire_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


ScheduleListSchema = list_schema(ScheduleSchema, "Schedule")


class SchedulePatchSchema(ScheduleSpecSchema):
    """Any subset of a schedule's fields but its name."""

    class Meta:
        exclude = ("name",)


class UpcomingQuerySchema(ma.Schema):
    count = ma.fields.Integer(load_default=5, validate=ma.validate.Range(min=1, max=UPCOMING_MAX))


class UpcomingSchema(ma.Schema):
    name = ma.fields.String()
    times = ma.fields.List(ma.fields.DateTime(), metadata={"description": "UTC, ascending"})


class TriggeredSchema(ma.Schema):
    schedule = ma.fields.String()
    run_id = ma.fields.UUID()


@blp.route("")
class Schedules(MethodView):
    @require_scopes(sc.SCHEDULES_READ)
    @blp.response(200, ScheduleListSchema)
    def get(self) -> dict[str, Any]:
        """List schedules

        Every schedule by name, with its last and next fire time.
        """
        with session_scope() as session:
            rows = list_schedules(session=session)
        return {"items": rows, "total": len(rows)}

    @require_scopes(sc.SCHEDULES_WRITE)
    @blp.arguments(ScheduleSpecSchema)
    @blp.response(201, ScheduleSchema)
    def post(self, spec: dict[str, Any]) -> tuple[Schedule, int, dict[str, str]]:
        """Create a schedule

        Exactly one of `cron` (5 fields, read in `timezone`) and `every` (seconds); `inputs` are
        checked against the workflow's input schema now. 400 names the field; 409 when the name
        is taken. Its first slot is the first one from now on.
        """
        with session_scope() as session:
            row = create_schedule(session=session, spec=spec)
        return row, 201, {"Location": f"/api/v1/schedules/{row.name}"}


@blp.route("/<string:name>")
class ScheduleByName(MethodView):
    @require_scopes(sc.SCHEDULES_READ)
    @blp.response(200, ScheduleSchema)
    def get(self, name: str) -> Schedule:
        """Get a schedule"""
        with session_scope() as session:
            return get_schedule(session=session, name=name)

    @require_scopes(sc.SCHEDULES_WRITE)
    @blp.arguments(SchedulePatchSchema(partial=True))
    @blp.response(200, ScheduleSchema)
    def patch(self, changes: dict[str, Any], name: str) -> Schedule:
        """Change a schedule

        The fields given; the result is checked as a whole. Setting `cron` clears `every` and
        the reverse. Changing its timing re-plans it from now.
        """
        with session_scope() as session:
            row = get_schedule(session=session, name=name, lock=True)
            return update_schedule(session=session, schedule=row, changes=changes)

    @require_scopes(sc.SCHEDULES_WRITE)
    @blp.response(204)
    def delete(self, name: str) -> None:
        """Delete a schedule

        Its fire history goes with it; the runs it started stay.
        """
        with session_scope() as session:
            session.delete(get_schedule(session=session, name=name, lock=True))


@blp.route("/<string:name>/pause")
class SchedulePause(MethodView):
    @require_scopes(sc.SCHEDULES_WRITE)
    @blp.response(200, ScheduleSchema)
    def post(self, name: str) -> Schedule:
        """Pause a schedule

        No slot fires while paused.
        """
        with session_scope() as session:
            row = get_schedule(session=session, name=name, lock=True)
            return set_paused(session=session, schedule=row, paused=True)


@blp.route("/<string:name>/resume")
class ScheduleResume(MethodView):
    @require_scopes(sc.SCHEDULES_WRITE)
    @blp.response(200, ScheduleSchema)
    def post(self, name: str) -> Schedule:
        """Resume a schedule

        From the next slot on: slots that fell while it was paused are not caught up.
        """
        with session_scope() as session:
            row = get_schedule(session=session, name=name, lock=True)
            return set_paused(session=session, schedule=row, paused=False)


@blp.route("/<string:name>/trigger")
class ScheduleTrigger(MethodView):
    @require_scopes(sc.SCHEDULES_WRITE, sc.RUNS_WRITE)
    @blp.response(202, TriggeredSchema)
    def post(self, name: str) -> dict[str, Any]:
        """Run a schedule now

        One run of its workflow and inputs outside the slots (its trigger says `manual`),
        whatever the overlap policy, paused or not. 400/404 when the workflow no longer
        accepts it.
        """
        with session_scope() as session:
            row = get_schedule(session=session, name=name, lock=True)
            result = trigger_now(session=session, settings=get_settings(), schedule=row)
        publish(result.outbox_ids)
        revoke(result.revoke_task_ids)
        return {"schedule": name, "run_id": result.run_ids[0]}


@blp.route("/<string:name>/upcoming")
class ScheduleUpcoming(MethodView):
    @require_scopes(sc.SCHEDULES_READ)
    @blp.arguments(UpcomingQuerySchema, location="query")
    @blp.response(200, UpcomingSchema)
    def get(self, query: dict[str, Any], name: str) -> dict[str, Any]:
        """List upcoming fire times

        The next `count` slots (1-100) from now, within its start and end dates.
        """
        with session_scope() as session:
            row = get_schedule(session=session, name=name)
            times = upcoming(timing_of(row), utcnow(), query["count"])
        return {"name": name, "times": times}

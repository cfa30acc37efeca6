"""A schedule as a user writes it (API body or a workflow's `schedules:` entry), checked once here
so both paths name the same fields in their errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma

from agent33.automation.schedules import check_cron, zone
from agent33.definitions.schemas import NAME

OVERLAP_POLICIES = ("skip", "allow", "queue", "cancel_previous")
CATCHUP_POLICIES = ("skip", "once", "all")
EVERY_MAX = 366 * 24 * 3600
# Slot arithmetic stays far from datetime's year 1 and 9999 limits.
DATES = ma.validate.Range(
    min=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    max=dt.datetime(2200, 1, 1, tzinfo=dt.UTC),
    error="must be between 1970 and 2200",
)


class ScheduleSpecSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=NAME)
    workflow = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    inputs = ma.fields.Dict(keys=ma.fields.String(), load_default=dict)
    cron = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=200),
        metadata={"description": "5-field cron expression, read in `timezone`"},
    )
    timezone = ma.fields.String(
        load_default="UTC", validate=ma.validate.Length(min=1, max=64), metadata={"example": "UTC"}
    )
    every = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=1, max=EVERY_MAX),
        metadata={"description": "Seconds between slots (instead of `cron`)"},
    )
    overlap = ma.fields.String(load_default="skip", validate=ma.validate.OneOf(OVERLAP_POLICIES))
    catchup = ma.fields.String(load_default="all", validate=ma.validate.OneOf(CATCHUP_POLICIES))
    start_at = ma.fields.AwareDateTime(load_default=None, allow_none=True, validate=DATES)
    end_at = ma.fields.AwareDateTime(load_default=None, allow_none=True, validate=DATES)
    paused = ma.fields.Boolean(load_default=False)

    @ma.validates_schema(skip_on_field_errors=True)
    def _timing(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if partial:
            return  # a patch is checked once merged with the stored schedule
        check_timing(data)


def check_timing(data: dict[str, Any]) -> None:
    """Exactly one of cron/every, a valid cron and zone, a start before the end; normalises
    `cron`. Raises marshmallow's ValidationError keyed by field."""
    cron, every = data.get("cron"), data.get("every")
    if (cron is None) == (every is None):
        message = "give exactly one of `cron` and `every`"
        raise ma.ValidationError({"cron": [message], "every": [message]})
    if cron is not None:
        try:
            data["cron"] = check_cron(cron)
        except ValueError as exc:
            raise ma.ValidationError(str(exc), "cron") from None
    try:
        zone(data.get("timezone") or "UTC")
    except ValueError as exc:
        raise ma.ValidationError(str(exc), "timezone") from None
    start, end = data.get("start_at"), data.get("end_at")
    if start is not None and end is not None and end <= start:
        raise ma.ValidationError("must be after `start_at`", "end_at")

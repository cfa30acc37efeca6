"""Automation rows: what starts runs without a person asking, and who is told what happened.

Schedules: one `schedule_fires` row per (schedule, slot), unique, so a slot is handled once
however many beats tick at once. Sensors: the watch and its checking state on one row.
Webhooks: subscriptions and their deliveries; dead letters: what the system gave up on."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow

# --- Sensors (agent33.automation.sensors, events) ---------------------------------------------


class Sensor(Base):
    """A watch that starts a workflow run per new event; its checking state lives on the row.

    `spec` is the validated definition (kind-specific fields and the `inputs` template);
    `state` is what the last check saw (reported file fingerprints, the open staleness
    episode), so a restarted or second beat carries on where the last tick stopped.
    """

    __tablename__ = "sensors"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    workflow: Mapped[str] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(100), index=True)  # kind `event` only
    spec: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(500), default="api")
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    triggers: Mapped[int] = mapped_column(Integer, default=0)
    last_check_at: Mapped[dt.datetime | None]
    next_check_at: Mapped[dt.datetime | None] = mapped_column(index=True)  # None: at once
    last_trigger_at: Mapped[dt.datetime | None]
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- end of sensors ---------------------------------------------------------------------------


# --- Schedules (agent33.automation.schedule_*) ----------------------------------------------


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (CheckConstraint("(cron IS NULL) <> (every IS NULL)", name="cron_or_every"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    inputs: Mapped[dict[str, Any]]
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    every: Mapped[int | None]  # seconds between slots, counted from start_at (else created_at)
    overlap: Mapped[str] = mapped_column(String(20))
    catchup: Mapped[str] = mapped_column(String(20))
    start_at: Mapped[dt.datetime | None]
    end_at: Mapped[dt.datetime | None]
    paused: Mapped[bool] = mapped_column(default=False)
    # "api" (made through the API/CLI) or "workflow" (declared in a workflow's `schedules:`).
    source: Mapped[str] = mapped_column(String(20), default="api")
    last_fire_at: Mapped[dt.datetime | None]
    # The earliest slot not handled yet; the tick reads schedules whose slot has come.
    next_fire_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduleFire(Base):
    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_time: Mapped[dt.datetime]
    # fired | skipped (overlap, queue full, missed) | pending (overlap: queue) | failed
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    manual: Mapped[bool] = mapped_column(default=False)
    catchup: Mapped[bool] = mapped_column(default=False)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- outbound webhooks and dead letters (issue 11, items 2 and 3) ---
class Webhook(Base):
    """A subscription: events of these types (optionally of one workflow) are POSTed to `url`.

    The signing secret lives in the vault under `secret_name`, never in this row."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(default=list)
    workflow: Mapped[str | None] = mapped_column(String(200))
    secret_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(default=True, index=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription; `msg_id` is the `webhook-id` every attempt carries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index(None, "webhook_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class DeadLetter(Base):
    """A message the system gave up on, kept with what is needed to send it again."""

    __tablename__ = "dead_letters"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    ref: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    replayed_at: Mapped[dt.datetime | None]


# --- end of outbound webhooks and dead letters ---

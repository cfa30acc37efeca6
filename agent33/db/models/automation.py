"""Schedules and their fires: one `schedule_fires` row per (schedule, slot), unique, so a slot is
handled once however many beats tick at once."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


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

"""Automation: what starts runs without a person (schedules, sensors, events) and what is told."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
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

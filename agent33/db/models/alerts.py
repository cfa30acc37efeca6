"""Alert state: per rule, where its condition stands; per incident, when it fired and resolved.

A partial unique index allows one open incident per rule, so two beats evaluating at once can
never fire the same rule twice for one incident."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Float, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


class AlertState(Base):
    """One row per rule ever evaluated: the last value and since when the condition holds."""

    __tablename__ = "alert_states"

    rule: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    value: Mapped[float | None] = mapped_column(Float)
    # When the condition started to hold (None: it does not); firing waits for the rule's `for`.
    pending_since: Mapped[dt.datetime | None]
    checked_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AlertIncident(Base):
    """One firing of a rule, from the tick that fired it to the tick that saw it clear."""

    __tablename__ = "alert_incidents"
    __table_args__ = (
        Index(
            "uq_alert_incidents_open_rule",
            "rule",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    threshold: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)  # what was measured when it fired
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fired_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[dt.datetime | None]
    resolved_value: Mapped[float | None] = mapped_column(Float)

"""Automation: outbound webhook subscriptions, their deliveries, and the dead-letter queue."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


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

"""Messaging channels: a configured bot on one platform, what it received and what it sends.

An inbound row per platform delivery id (unique per channel), so a platform's redelivery is
recognised by the insert alone; an outbound row per answer, sent in chunks from the `io` queue
with its attempts and last error; identities link a platform sender to an Agent33 user.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


class Channel(Base):
    """One bot on one platform; `secrets` maps a role (e.g. `token`) to a vault secret name."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    agent: Mapped[str | None] = mapped_column(String(200))  # answers, or ...
    workflow: Mapped[str | None] = mapped_column(String(200))  # ... a run per message
    api_url: Mapped[str | None] = mapped_column(String(500))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secrets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    require_pairing: Mapped[bool] = mapped_column(Boolean, default=False)
    allowlist: Mapped[list[str]] = mapped_column(default=list)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChannelIdentity(Base):
    """A platform sender paired with an Agent33 user (by a one-time code)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel_id", "sender"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(200))
    username: Mapped[str] = mapped_column(String(150))
    paired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChannelInbound(Base):
    """One received message; `event_id` is the platform's delivery id (dedupe key)."""

    __tablename__ = "channel_inbound"
    __table_args__ = (UniqueConstraint("channel_id", "event_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(200))
    conversation: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    username: Mapped[str | None] = mapped_column(String(150))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[str] = mapped_column(String(20), default="received")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChannelOutbound(Base):
    """One answer to send, already split into the platform's chunks; `sent` counts the chunks
    delivered, so a retry resumes after the last one the platform accepted."""

    __tablename__ = "channel_outbound"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_inbound.id", ondelete="SET NULL"), index=True
    )
    conversation: Mapped[str] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chunks: Mapped[list[str]]
    sent: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    refs: Mapped[list[str]] = mapped_column(default=list)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]

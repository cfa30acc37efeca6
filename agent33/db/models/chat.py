"""Chat transcripts: the durable record behind the short-lived Redis session buffer.

Redis keeps only the recent turns (and forgets them after a day); this table keeps every turn
so a session can be replayed, audited, or its buffer rebuilt after it expired.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, Identity, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    # One row per role per turn: a turn redelivered after its worker died records nothing twice.
    __table_args__ = (UniqueConstraint("request_id", "role"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(index=True)
    agent: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    usage: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    # The API request (the chat task's id) that recorded it; NULL on rows older than the key.
    request_id: Mapped[str | None] = mapped_column(String(64))

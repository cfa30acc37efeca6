"""Stored, versioned agent and workflow definitions (the spec is the validated JSON document)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from agent33.db.base import Base, utcnow


class VersionedDefinition:
    """The columns both definition tables share: one row per (name, version), never edited."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("name", "version"),)  # one constraint object per table

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int]
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(500), default="api")
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WorkflowDefinition(VersionedDefinition, Base):
    __tablename__ = "workflow_definitions"


class AgentDefinition(VersionedDefinition, Base):
    __tablename__ = "agent_definitions"

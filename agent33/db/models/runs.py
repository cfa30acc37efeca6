"""Runs, their steps, and the append-only event log that explains every transition."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from agent33.db.base import Base, JSONColumn, utcnow


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # Admission: the oldest queued run of a key, and the count of a key's admitted runs.
        Index(
            "ix_runs_concurrency",
            "workflow_name",
            "concurrency_key",
            "state",
            "created_at",
            postgresql_where=text("concurrency_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_definitions.id", ondelete="RESTRICT"), index=True
    )
    workflow_name: Mapped[str] = mapped_column(String(200), index=True)
    workflow_version: Mapped[int]
    state: Mapped[str] = mapped_column(String(20), index=True)
    inputs: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    parent_step_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_runs.id", ondelete="SET NULL", use_alter=True), index=True
    )
    created_by: Mapped[str | None] = mapped_column(String(200))
    # What started the run when no person did: {"kind": "schedule", "schedule": ..., "slot": ...}
    # for a schedule's slot, {"kind": "sensor" | "event", ...} for automation; None for API/CLI.
    trigger: Mapped[dict[str, Any] | None]
    # The run this one reruns from a step (its steps before that step are copied from it).
    rerun_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    # A pinned run is never purged by retention.
    pinned: Mapped[bool] = mapped_column(default=False, server_default=false())
    # `concurrency:` of the workflow, evaluated at creation: runs of one workflow sharing a key
    # are admitted at most `concurrency_limit` at a time, the rest wait `queued`.
    concurrency_key: Mapped[str | None] = mapped_column(String(200))
    concurrency_limit: Mapped[int | None]
    # 0 (default) to 9 (most urgent): the broker delivers this run's step messages by it.
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None] = mapped_column(index=True)

    steps: Mapped[list[StepRun]] = relationship(
        back_populates="run",
        order_by="StepRun.position",
        cascade="all, delete-orphan",
        foreign_keys="StepRun.run_id",
    )


class StepRun(Base):
    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("run_id", "step_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    action: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempt: Mapped[int] = mapped_column(default=0)
    deliveries: Mapped[int] = mapped_column(default=0)
    # Times the reaper re-published this step's message while it sat queued (message lost).
    republishes: Mapped[int] = mapped_column(default=0, server_default="0")
    depends_on: Mapped[list[str]] = mapped_column(default=list)
    inputs: Mapped[dict[str, Any] | None]
    output: Mapped[Any | None] = mapped_column(JSONColumn)
    error: Mapped[dict[str, Any] | None]
    queue: Mapped[str] = mapped_column(String(100))
    worker: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    heartbeat_at: Mapped[dt.datetime | None]  # last lease renewal by the worker running it
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_runs.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str | None] = mapped_column(String(200))
    waiting_for: Mapped[str | None] = mapped_column(String(20))
    # Set on a rerun's step whose outcome was copied from this run (it did not execute again).
    copied_from: Mapped[uuid.UUID | None]

    run: Mapped[Run] = relationship(back_populates="steps", foreign_keys=[run_id])


class RunEvent(Base):
    """Append-only: rows are inserted, never updated or deleted (except with their run)."""

    __tablename__ = "run_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

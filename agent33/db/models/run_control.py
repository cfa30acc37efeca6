"""What a run's model and tool calls were (for replay and usage), its budget, and its replays."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Identity, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow


class RecordedCall(Base):
    """One model call (request, response, usage, latency, cost) or tool call (arguments,
    result) of one step attempt, in the order the step made them."""

    __tablename__ = "recorded_calls"
    __table_args__ = (Index("ix_recorded_calls_run_id_step_id", "run_id", "step_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int]
    sequence: Mapped[int]  # the call's position in its step attempt, from 0
    kind: Mapped[str] = mapped_column(String(10))  # model | tool
    name: Mapped[str] = mapped_column(String(200))  # the model asked for, or the tool
    request_hash: Mapped[str] = mapped_column(String(64))
    # `json`, not `jsonb`: kept verbatim, key order included, as the model was sent it (a tool
    # result fed back in another key order would be another request).
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    replayed: Mapped[bool] = mapped_column(default=False)  # answered from the recording
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RunBudget(Base):
    """The token and cost limits of a run tree (the root run, its map children and sub-runs):
    calls reserve against it with one conditional UPDATE and settle with their real usage."""

    __tablename__ = "run_budgets"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    token_limit: Mapped[int | None] = mapped_column(BigInteger)
    cost_limit: Mapped[float | None] = mapped_column(Float)
    tokens_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_reserved: Mapped[float] = mapped_column(Float, default=0)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_used: Mapped[float] = mapped_column(Float, default=0)
    on_budget: Mapped[str] = mapped_column(String(10), default="fail")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RunReplay(Base):
    """A run that re-executes `source_run_id` with its calls answered from the recording."""

    __tablename__ = "run_replays"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    source_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    strict: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

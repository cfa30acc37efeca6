"""Retention: delete finished runs, chat messages and published outbox rows past their age.

Rows go in bounded batches, each its own short transaction that locks only the rows it deletes
(`FOR UPDATE SKIP LOCKED`: a row another transaction holds waits for the next batch), so a purge
of millions of rows never holds long locks or builds one huge transaction. A run's steps,
events, outbox rows and recorded calls go with it (`ON DELETE CASCADE`); rows elsewhere that
name it (schedule fires, sensor events, dead letters, a rerun's `rerun_of`) keep their own
history with the reference cleared (`ON DELETE SET NULL`).

Which runs: finished (`succeeded`, `failed`, `cancelled`) before now minus their workflow's
`retention.days` (else the default), not pinned, and not a sub-run whose parent run still
exists (a sub-run goes, by its own retention, once its parent has gone: a pinned run keeps its
sub-runs).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, literal, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import ChatMessage, OutboxMessage, Run, WorkflowDefinition
from agent33.engine.states import RUN_TERMINAL
from agent33.errors import NotFound

DAY_SECONDS = 86400.0


@dataclass
class PurgeResult:
    """Rows deleted (or, in a dry run, that would be)."""

    runs: int = 0
    chat_messages: int = 0
    outbox_messages: int = 0
    dry_run: bool = False


@dataclass(frozen=True)
class Policy:
    """Ages in days (0: keep forever) and the batch size; from settings or a CLI override."""

    run_days: float
    chat_days: float
    outbox_days: float
    batch: int

    @classmethod
    def from_settings(cls, settings: Settings, older_than: float | None = None) -> Policy:
        """`older_than` (the CLI's `--older-than`) replaces every default age; a workflow's
        own `retention.days` still wins for its runs."""
        return cls(
            run_days=settings.retention_run_days if older_than is None else older_than,
            chat_days=settings.retention_chat_days if older_than is None else older_than,
            outbox_days=settings.retention_outbox_days if older_than is None else older_than,
            batch=settings.retention_batch,
        )


Candidates = tuple[type[Run] | type[ChatMessage] | type[OutboxMessage], Select[Any]]


def _run_candidates(policy: Policy, now: dt.datetime) -> Candidates:
    override = WorkflowDefinition.spec[("retention", "days")].as_float()
    days = func.coalesce(override, literal(float(policy.run_days)))
    finished_before = literal(now) - func.make_interval(0, 0, 0, 0, 0, 0, days * DAY_SECONDS)
    query = (
        select(Run.id)
        .join(WorkflowDefinition, WorkflowDefinition.id == Run.workflow_id)
        .where(
            Run.state.in_([s.value for s in RUN_TERMINAL]),
            Run.pinned.is_(False),
            Run.parent_step_run_id.is_(None),
            Run.finished_at.is_not(None),
            days > 0,
            Run.finished_at < finished_before,
        )
    )
    return Run, query


def _chat_candidates(policy: Policy, now: dt.datetime) -> Candidates | None:
    if policy.chat_days <= 0:
        return None
    cutoff = now - dt.timedelta(days=policy.chat_days)
    return ChatMessage, select(ChatMessage.id).where(ChatMessage.created_at < cutoff)


def _outbox_candidates(policy: Policy, now: dt.datetime) -> Candidates | None:
    if policy.outbox_days <= 0:
        return None
    cutoff = now - dt.timedelta(days=policy.outbox_days)
    return OutboxMessage, select(OutboxMessage.id).where(
        OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < cutoff
    )


def purge_batch(session: Session, candidates: Candidates, limit: int) -> int:
    """Delete up to `limit` rows the query selects, skipping rows another transaction holds
    (only the candidate table's rows are locked, never the definitions they join)."""
    model, query = candidates
    ids = query.limit(limit).with_for_update(skip_locked=True, of=model)
    result = session.execute(delete(model).where(model.id.in_(ids.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


def count(session: Session, candidates: Candidates) -> int:
    return int(session.scalar(select(func.count()).select_from(candidates[1].subquery())) or 0)


def purge(
    settings: Settings,
    *,
    older_than: float | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    max_batches: int | None = None,
) -> PurgeResult:
    """Purge everything due, one batch per transaction, until nothing is left (or
    `max_batches` per kind, so one beat tick stays bounded); `dry_run` only counts."""
    policy = Policy.from_settings(settings, older_than)
    now = now or utcnow()
    result = PurgeResult(dry_run=dry_run)
    kinds = {
        "runs": _run_candidates(policy, now),
        "chat_messages": _chat_candidates(policy, now),
        "outbox_messages": _outbox_candidates(policy, now),
    }
    for name, candidates in kinds.items():
        if candidates is None:
            continue
        if dry_run:
            with session_scope() as session:
                setattr(result, name, count(session, candidates))
            continue
        batches = 0
        while max_batches is None or batches < max_batches:
            with session_scope() as session:
                deleted = purge_batch(session, candidates, policy.batch)
            setattr(result, name, getattr(result, name) + deleted)
            batches += 1
            if not deleted:  # not `< batch`: deleting a run can make its sub-runs due
                break
    return result


def set_pinned(*, session: Session, run_id: uuid.UUID, pinned: bool) -> Run:
    """Pin (keep forever) or unpin a run; NotFound when absent. Never commits."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    run.pinned = pinned
    return run

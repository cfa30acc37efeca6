"""Retention against real PostgreSQL rows of various ages: what goes, what stays, what its
deletion leaves behind (nothing orphaned), and that a locked row is skipped, not waited for."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import (
    ChatMessage,
    DeadLetter,
    OutboxMessage,
    Run,
    RunEvent,
    StepRun,
)
from agent33.definitions.registry import get_workflow
from agent33.engine import retention
from tests.integration.engine.helpers import save

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db")]
NOW = utcnow()


def _workflow(name: str, **extra: Any) -> uuid.UUID:
    save(
        {
            "name": name,
            "inputs": {"type": "object"},
            "steps": [{"id": "a", "action": "transform"}],
            **extra,
        }
    )
    with session_scope() as session:
        return get_workflow(session=session, name=name).id


def _run(
    workflow_id: uuid.UUID,
    age_days: float,
    *,
    state: str = "succeeded",
    pinned: bool = False,
    parent_step_run_id: uuid.UUID | None = None,
    rerun_of: uuid.UUID | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A finished (or not) run with a step, an event and a published outbox row; returns the
    run id and its step's row id."""
    at = NOW - dt.timedelta(days=age_days)
    finished = state in ("succeeded", "failed", "cancelled")
    with session_scope() as session:
        run = Run(
            workflow_id=workflow_id,
            workflow_name="wf",
            workflow_version=1,
            state=state,
            inputs={},
            pinned=pinned,
            parent_step_run_id=parent_step_run_id,
            rerun_of=rerun_of,
            created_at=at,
            finished_at=at if finished else None,
        )
        step = StepRun(step_id="a", position=0, action="transform", state=state, queue="steps")
        run.steps.append(step)
        session.add(run)
        session.flush()
        session.add(RunEvent(run_id=run.id, kind="run.state", to_state=state, created_at=at))
        session.add(OutboxMessage(run_id=run.id, payload={}, created_at=at, published_at=at))
        return run.id, step.id


def _exists(model: Any, ident: Any) -> bool:
    with session_scope() as session:
        return session.get(model, ident) is not None


def _rows(model: Any, run_id: uuid.UUID) -> int:
    with session_scope() as session:
        return int(
            session.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))
            or 0
        )


def test_old_finished_runs_go_with_their_rows_and_the_rest_stay(settings: Settings) -> None:
    plain = _workflow("plain")
    long_kept = _workflow("long_kept", retention={"days": 365})
    short_kept = _workflow("short_kept", retention={"days": 3})
    old = {state: _run(plain, 40, state=state)[0] for state in ("succeeded", "failed", "cancelled")}
    young, _ = _run(plain, 5)
    still_running, _ = _run(plain, 40, state="running")
    pinned, pinned_step = _run(plain, 40, pinned=True)
    overridden_long, _ = _run(long_kept, 40)
    overridden_short, _ = _run(short_kept, 5)
    parent, parent_step = _run(plain, 35)
    sub_run, _ = _run(plain, 36, parent_step_run_id=parent_step)
    pinned_sub_run, _ = _run(plain, 36, parent_step_run_id=pinned_step)
    rerun, _ = _run(plain, 1, rerun_of=old["failed"])
    with session_scope() as session:
        letter = DeadLetter(kind="step", ref="x", run_id=old["failed"], payload={}, attempts=3)
        session.add(letter)
        session.flush()
        letter_id = letter.id
    small = settings.replace(retention_batch=2)  # several batches, each its own transaction

    counted = retention.purge(small, dry_run=True, now=NOW)
    assert counted.dry_run and counted.runs == 5  # top-level due runs; sub-runs follow them
    assert all(_exists(Run, run_id) for run_id in old.values())

    result = retention.purge(small, now=NOW)

    gone = [*old.values(), overridden_short, parent, sub_run]
    kept = [young, still_running, pinned, overridden_long, pinned_sub_run, rerun]
    assert result.runs == len(gone)
    assert [r for r in gone if _exists(Run, r)] == []
    assert [r for r in kept if not _exists(Run, r)] == []
    for run_id in gone:  # cascaded: nothing of the run is left behind
        assert (
            _rows(StepRun, run_id) == _rows(RunEvent, run_id) == _rows(OutboxMessage, run_id) == 0
        )
    with session_scope() as session:  # references from elsewhere are cleared, not dangling
        assert session.get(Run, rerun).rerun_of is None  # type: ignore[union-attr]
        assert session.get(DeadLetter, letter_id).run_id is None  # type: ignore[union-attr]
    assert retention.purge(small, now=NOW).runs == 0


def test_chat_messages_and_published_outbox_rows(settings: Settings) -> None:
    plain = _workflow("plain_chat")
    kept_run, _ = _run(plain, 1)
    session_id = uuid.uuid4()
    with session_scope() as session:
        for age in (100, 91, 10):
            session.add(
                ChatMessage(
                    session_id=session_id,
                    agent="assistant",
                    role="user",
                    content=f"{age} days ago",
                    created_at=NOW - dt.timedelta(days=age),
                )
            )
        old = NOW - dt.timedelta(days=30)
        session.add(OutboxMessage(run_id=kept_run, payload={}, created_at=old, published_at=old))
        session.add(OutboxMessage(run_id=kept_run, payload={"unpublished": True}, created_at=old))
    result = retention.purge(settings, now=NOW)
    assert (result.chat_messages, result.outbox_messages) == (2, 1)
    with session_scope() as session:
        left = session.scalars(select(ChatMessage.content)).all()
        outbox = session.execute(
            select(OutboxMessage.payload, OutboxMessage.published_at).where(
                OutboxMessage.run_id == kept_run
            )
        ).all()
    assert left == ["10 days ago"]
    assert len(outbox) == 2 and {"unpublished": True} in [p for p, _ in outbox]


def test_zero_keeps_forever_but_a_workflow_override_still_applies(settings: Settings) -> None:
    plain = _workflow("plain_forever")
    short = _workflow("short_forever", retention={"days": 2})
    ancient, _ = _run(plain, 3000)
    due, _ = _run(short, 3)
    forever = settings.replace(retention_run_days=0, retention_chat_days=0, retention_outbox_days=0)
    result = retention.purge(forever, now=NOW)
    assert (result.runs, result.chat_messages, result.outbox_messages) == (1, 0, 0)
    assert _exists(Run, ancient) and not _exists(Run, due)
    # The CLI's --older-than replaces the defaults for this purge only.
    assert retention.purge(forever, older_than=2000, now=NOW).runs == 1
    assert not _exists(Run, ancient)


def test_a_locked_run_is_skipped_not_waited_for(settings: Settings) -> None:
    plain = _workflow("plain_locked")
    locked, _ = _run(plain, 40)
    free, _ = _run(plain, 40)
    with session_scope() as holder:
        holder.scalar(select(Run).where(Run.id == locked).with_for_update())
        result = retention.purge(settings.replace(retention_outbox_days=0), now=NOW)
        assert result.runs == 1 and not _exists(Run, free)
    assert _exists(Run, locked)
    assert retention.purge(settings, now=NOW).runs == 1 and not _exists(Run, locked)


def test_the_beat_task_purges(settings: Settings) -> None:
    from tasks.app import settings_swapped
    from tasks.maintenance import purge_runs

    plain = _workflow("plain_beat")
    old, _ = _run(plain, settings.retention_run_days + 1)
    young, _ = _run(plain, settings.retention_run_days - 1)
    with settings_swapped(settings):
        assert purge_runs()["runs"] == 1
    assert not _exists(Run, old) and _exists(Run, young)

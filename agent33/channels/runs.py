"""Channels that start workflows: a message starts a run, `/approve` or `/reject` answers the
conversation's run waiting for an approval, and the run's outcome is sent back (`notify`).

The run's inputs are the message (`text`, `sender`, `conversation`, `user`); its idempotency
key is the platform's delivery id, so a redelivered message never starts a second run. Only a
paired user holding `runs:write` may approve, and the approval is recorded as that user's.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import Channel, ChannelInbound, StepRun, User
from agent33.engine.lifecycle import approve_step
from agent33.engine.service import start_run
from agent33.errors import Agent33Error
from agent33.security.scopes import ADMIN, RUNS_WRITE

APPROVE = re.compile(r"^\s*/(approve|reject)\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
NOT_ALLOWED = "Only a paired user who may run workflows can approve."
NO_RUNS = "Your Agent33 user may not start workflows (it lacks runs:write)."
NOTHING_WAITING = "No run of this conversation is waiting for an approval."


def _may_run(session: Session, username: str | None) -> bool:
    if username is None:
        return False
    user = session.scalar(select(User).where(User.username == username))
    return user is not None and user.is_active and bool({RUNS_WRITE, ADMIN} & set(user.scopes))


def _approve(
    session: Session, channel: Channel, row: ChannelInbound, approved: bool, comment: str | None
) -> tuple[str, list[int]]:
    if not _may_run(session, row.username):
        return NOT_ALLOWED, []
    waiting = session.execute(
        select(StepRun.run_id, StepRun.step_id)
        .join(ChannelInbound, ChannelInbound.run_id == StepRun.run_id)
        .where(
            ChannelInbound.channel_id == channel.id,
            ChannelInbound.conversation == row.conversation,
            StepRun.waiting_for == "approval",
        )
        .order_by(ChannelInbound.id.desc())
        .limit(1)
    ).first()
    if waiting is None:
        return NOTHING_WAITING, []
    result = approve_step(
        session=session,
        run_id=waiting.run_id,
        step_id=waiting.step_id,
        approved=approved,
        comment=comment,
        by=row.username,
    )
    verb = "Approved" if approved else "Rejected"
    return f"{verb} step {waiting.step_id} of run {waiting.run_id}.", result.outbox_ids


def handle(
    *, settings: Settings, session: Session, channel: Channel, row: ChannelInbound
) -> tuple[str | None, list[int]]:
    """(a reply to send now or None, outbox ids to publish after the commit)."""
    assert channel.workflow is not None
    command = APPROVE.match(row.text)
    if command is not None:
        row.state = "handled"
        approved = command.group(1).lower() == "approve"
        try:
            return _approve(session, channel, row, approved, command.group(2).strip() or None)
        except Agent33Error as exc:
            return f"Could not {command.group(1).lower()}: {exc.message}", []
    if row.username is not None and not _may_run(session, row.username):
        row.state = "refused"
        return NO_RUNS, []
    try:
        with session.begin_nested():
            run, outbox, _ = start_run(
                session=session,
                settings=settings,
                workflow_name=channel.workflow,
                inputs={
                    "text": row.text,
                    "sender": row.sender,
                    "conversation": row.conversation,
                    "user": row.username,
                },
                idempotency_key=f"channel:{channel.id}:{row.event_id}",
                created_by=row.username or f"channel:{channel.kind}/{channel.name}",
            )
    except Agent33Error as exc:
        row.state = "failed"
        return f"Sorry, that could not start: {exc.message}", []
    row.run_id = run.id
    row.state = "running"
    return None, outbox

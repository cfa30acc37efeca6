"""Answer one received message with its channel's agent, then send it from the `io` queue.

The agent turn is the chat turn of `agent33.agents.chat` (one session per conversation, so
the agent remembers the conversation). Each chunk is sent in order; a failed chunk is retried
with exponential backoff (never sooner than the platform's retry hint) and the answer is
dead-lettered when its attempts are spent or the platform refuses it for good.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from agent33.agents.chat import ChatTurn, chat_turn
from agent33.automation import dead_letters
from agent33.automation.delivery import backoff
from agent33.channels import store
from agent33.channels.protocol import Outgoing, Sent
from agent33.channels.registry import adapter
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Channel, ChannelInbound, ChannelOutbound
from agent33.errors import Agent33Error

log = structlog.get_logger(__name__)
OPEN = ("pending", "retrying")
GRACE_S = 60.0
UNANSWERED_S = 120.0  # a received message no reply task took: its message was lost
STALLED_S = 900.0  # an agent turn this old died with its worker (turns are not redelivered)
STALLED = "Sorry, I lost track of your message. Please send it again."
FAILED = "Sorry, I could not answer that right now. Please try again later."
CHANNEL = "channel"


@dataclass(frozen=True)
class Attempted:
    state: str
    retry_in: float | None = None


def answer(settings: Settings, inbound_id: int) -> int | None:
    """Run the agent on message `inbound_id` once; the id of the answer to send (None: the
    message was answered already or is gone)."""
    with session_scope() as session:
        row = session.scalar(
            select(ChannelInbound)
            .where(ChannelInbound.id == inbound_id)
            .with_for_update(skip_locked=True)
        )
        if row is None or row.state != "received":
            return None
        channel = session.get(Channel, row.channel_id)
        if channel is None or channel.agent is None:
            return None
        row.state = "answering"
        turn = ChatTurn(
            agent=channel.agent,
            message=row.text,
            session_id=str(store.chat_session(channel, row.conversation)),
            request_id=f"channel-{inbound_id}",
            user=row.username,
        )
    result = chat_turn(settings, turn)
    error = result.get("error")
    text = str(result.get("answer") or "") if error is None else FAILED
    if error is not None:  # the details (a provider's URL, say) are for the log, not the chat
        log.warning("channel.turn_failed", inbound_id=inbound_id, error=error)
    with session_scope() as session:
        row = session.get(ChannelInbound, inbound_id)
        channel = session.get(Channel, row.channel_id) if row is not None else None
        if row is None or channel is None:
            return None
        row.state = "answered" if error is None else "failed"
        return store.queue_answer(session=session, channel=channel, inbound=row, text=text).id


def send(settings: Settings, outbound_id: int) -> Attempted:
    """One attempt at the unsent chunks of answer `outbound_id`."""
    with session_scope() as session:
        out = session.scalar(
            select(ChannelOutbound)
            .where(ChannelOutbound.id == outbound_id)
            .with_for_update(skip_locked=True)
        )
        if out is None:
            return Attempted(state="busy_or_gone")
        if out.state not in OPEN:
            return Attempted(state=out.state)
        due = out.next_attempt_at
        if due is not None and due > utcnow() + dt.timedelta(seconds=1):
            return Attempted(state="early")
        channel = session.get(Channel, out.channel_id)
        result = Sent(ok=False, error="channel removed", retryable=False)
        if channel is not None:
            try:
                config = store.config_for(session, settings, channel)
            except Agent33Error as exc:
                result = Sent(ok=False, error=f"channel secret: {exc.message}", retryable=False)
            else:
                platform = adapter(channel.kind)
                first = out.sent
                while out.sent < len(out.chunks):
                    if out.sent > first and platform.pace:
                        time.sleep(platform.pace)
                    chunk = Outgoing(
                        conversation=out.conversation,
                        text=out.chunks[out.sent],
                        index=out.sent,
                        reply_to=out.reply_to,
                        extra=out.extra,
                    )
                    result = platform.send(config, chunk)
                    if not result.ok:
                        break
                    out.refs = [*out.refs, result.ref or ""]
                    out.sent += 1
        log.info(
            "channel.send",
            outbound_id=out.id,
            sent=out.sent,
            chunks=len(out.chunks),
            error=None if out.sent == len(out.chunks) else result.error,
        )
        if out.sent == len(out.chunks):
            out.state = "sent"
            out.sent_at = utcnow()
            out.next_attempt_at = None
            return Attempted(state=out.state)
        out.attempts += 1
        out.last_error = result.error
        if not result.retryable or out.attempts >= settings.webhook_max_attempts:
            out.state = "dead"
            out.next_attempt_at = None
            dead_letters.record(
                session=session,
                kind=dead_letters.CHANNEL,
                ref=str(out.id),
                payload={
                    "outbound_id": out.id,
                    "channel": f"{channel.kind}/{channel.name}" if channel else None,
                    "conversation": out.conversation,
                    "chunks": out.chunks,
                    "sent": out.sent,
                },
                attempts=out.attempts,
                last_error=out.last_error,
            )
            return Attempted(state=out.state)
        delay = backoff(out.attempts, settings.webhook_retry_base, result.retry_after)
        out.state = "retrying"
        out.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        return Attempted(state=out.state, retry_in=delay)


def overdue(*, grace_s: float = GRACE_S, limit: int = 200) -> list[int]:
    """Answers past their time by more than `grace_s`: their message was lost (a broker outage,
    a killed worker); the notify tick publishes them again (a send is idempotent per chunk)."""
    cutoff = utcnow() - dt.timedelta(seconds=grace_s)
    with session_scope() as session:
        return list(
            session.scalars(
                select(ChannelOutbound.id)
                .where(ChannelOutbound.state.in_(OPEN), ChannelOutbound.next_attempt_at < cutoff)
                .order_by(ChannelOutbound.id)
                .limit(limit)
            )
        )


def unanswered(*, limit: int = 200) -> list[int]:
    """Messages still waiting for their agent turn after `UNANSWERED_S`: published again (a
    turn takes a message only in state `received`, so a duplicate does nothing)."""
    cutoff = utcnow() - dt.timedelta(seconds=UNANSWERED_S)
    with session_scope() as session:
        return list(
            session.scalars(
                select(ChannelInbound.id)
                .join(Channel, Channel.id == ChannelInbound.channel_id)
                .where(
                    ChannelInbound.state == "received",
                    ChannelInbound.created_at < cutoff,
                    Channel.agent.is_not(None),
                )
                .order_by(ChannelInbound.id)
                .limit(limit)
            )
        )


def stalled(*, limit: int = 200) -> list[int]:
    """Turns that died with their worker: the sender is told to ask again (the turn is not
    run a second time: it may have had effects). Returns the answers to send."""
    cutoff = utcnow() - dt.timedelta(seconds=STALLED_S)
    answers: list[int] = []
    with session_scope() as session:
        rows = session.scalars(
            select(ChannelInbound)
            .where(ChannelInbound.state == "answering", ChannelInbound.created_at < cutoff)
            .order_by(ChannelInbound.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        for row in rows:
            channel = session.get(Channel, row.channel_id)
            row.state = "failed"
            if channel is not None:
                answer = store.queue_answer(
                    session=session, channel=channel, inbound=row, text=STALLED
                )
                answers.append(answer.id)
    return answers

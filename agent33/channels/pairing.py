"""Pairing: who may talk to a channel's agent, and as which Agent33 user.

A user asks for a one-time code (API or `agent33 channels pair`); sending `/pair <code>` to
the bot links that sender to the user. Codes live in Redis for ten minutes and are taken with
GETDEL, so one works once. A paired sender's messages run as its user while the user is active
and holds the `agents:read` scope; allowlisted senders run without a user; everyone else gets
a short refusal when the channel requires pairing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agent33.agents.sessions import redis_client
from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import Channel, ChannelIdentity, User
from agent33.errors import NotFound
from agent33.security.scopes import ADMIN, AGENTS_READ

CODE_TTL_S = 600
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
COMMAND = re.compile(r"^\s*/?(?:pair|start)\s+([A-Z0-9]{8})\s*$", re.IGNORECASE)
REFUSAL = "This chat is not paired with an Agent33 user. Ask for a code and send /pair <code>."
PAIRED = "Paired: your messages now run as {user}."
BAD_CODE = "That pairing code is unknown or expired."


@dataclass(frozen=True)
class Admission:
    """`allowed`: run the agent; `username`: as whom; `reply`: send this instead of running."""

    allowed: bool
    username: str | None = None
    reply: str | None = None


def _key(channel: Channel, code: str) -> str:
    return f"agent33:channel-pair:{channel.id}:{code}"


def issue(*, settings: Settings, session: Session, channel: Channel, username: str) -> str:
    """A fresh one-time code that pairs its sender with `username` (an existing user)."""
    if session.scalar(select(User.id).where(User.username == username)) is None:
        raise NotFound(f"no user {username!r}", fields={"user": ["not found"]})
    code = "".join(secrets.choice(ALPHABET) for _ in range(8))
    redis_client(settings).set(_key(channel, code), username, ex=CODE_TTL_S)
    return code


def _redeem(
    settings: Settings, session: Session, channel: Channel, sender: str, code: str
) -> str | None:
    taken = redis_client(settings).getdel(_key(channel, code.upper()))
    if taken is None:
        return None
    username = taken.decode() if isinstance(taken, bytes) else str(taken)
    session.execute(
        insert(ChannelIdentity)
        .values(channel_id=channel.id, sender=sender, username=username, paired_at=utcnow())
        .on_conflict_do_update(
            index_elements=["channel_id", "sender"],
            set_={"username": username, "paired_at": utcnow()},
        )
    )
    return username


def _may_chat(session: Session, username: str) -> bool:
    user = session.scalar(select(User).where(User.username == username))
    return user is not None and user.is_active and bool({AGENTS_READ, ADMIN} & set(user.scopes))


def admit(
    *, settings: Settings, session: Session, channel: Channel, sender: str, text: str
) -> Admission:
    """Decide what one message from `sender` does."""
    command = COMMAND.match(text)
    if command is not None:
        username = _redeem(settings, session, channel, sender, command.group(1))
        return Admission(False, reply=PAIRED.format(user=username) if username else BAD_CODE)
    username = session.scalar(
        select(ChannelIdentity.username).where(
            ChannelIdentity.channel_id == channel.id, ChannelIdentity.sender == sender
        )
    )
    if username is not None:
        if _may_chat(session, username):
            return Admission(True, username=username)
        return Admission(False, reply=REFUSAL)
    if sender in channel.allowlist:
        return Admission(True)
    if channel.require_pairing or channel.allowlist:
        return Admission(False, reply=REFUSAL)
    return Admission(True)

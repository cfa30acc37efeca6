"""Channels and their messages in PostgreSQL. Functions take `session` and never commit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agent33.channels.protocol import ChannelConfig, Inbound, split
from agent33.channels.registry import ADAPTERS, KINDS, adapter
from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import Channel, ChannelInbound, ChannelOutbound
from agent33.errors import Conflict, NotFound, ValidationFailed
from agent33.security import vault as vaults

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
SESSION_NAMESPACE = uuid.UUID("6f1c3f0e-5b7a-4c55-9a51-6d3c1e0f7a33")


def default_secret(kind: str, name: str, role: str) -> str:
    """The vault name a role's secret has unless the channel names another."""
    return f"CHANNEL_{kind}_{name}_{role}".upper().replace("-", "_")


def _checked(
    kind: str, name: str, options: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, str]:
    if kind not in ADAPTERS:
        raise ValidationFailed(
            f"unknown platform {kind!r}", fields={"kind": [f"one of {', '.join(KINDS)}"]}
        )
    if not NAME.fullmatch(name):
        raise ValidationFailed(
            "a channel name is lower-case letters, digits, - and _",
            fields={"name": ["invalid name"]},
        )
    platform = ADAPTERS[kind]
    problems: dict[str, list[str]] = {}
    for option in platform.option_names:
        if not str(options.get(option) or "").strip():
            problems[f"options.{option}"] = ["required"]
    for role in secrets:
        if role not in platform.secret_roles:
            problems[f"secrets.{role}"] = [f"one of {', '.join(platform.secret_roles) or '(none)'}"]
        elif not vaults.NAME_PATTERN.fullmatch(secrets[role]):
            problems[f"secrets.{role}"] = ["not a vault secret name"]
    if problems:
        raise ValidationFailed(f"invalid {kind} channel", fields=problems)
    return {
        role: secrets.get(role) or default_secret(kind, name, role)
        for role in platform.secret_roles
    }


def _one_target(agent: str | None, workflow: str | None) -> None:
    if (agent is None) == (workflow is None):
        raise ValidationFailed(
            "a channel answers with an agent or starts a workflow: give exactly one",
            fields={"agent": ["give agent or workflow"], "workflow": ["give agent or workflow"]},
        )


def create(
    *,
    session: Session,
    kind: str,
    name: str,
    agent: str | None = None,
    workflow: str | None = None,
    api_url: str | None = None,
    options: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    require_pairing: bool = False,
    allowlist: list[str] | None = None,
    created_by: str | None = None,
) -> Channel:
    _one_target(agent, workflow)
    names = _checked(kind, name, options or {}, secrets or {})
    if find(session=session, kind=kind, name=name) is not None:
        raise Conflict(f"channel {kind}/{name} exists", fields={"name": ["already exists"]})
    channel = Channel(
        kind=kind,
        name=name,
        agent=agent,
        workflow=workflow,
        api_url=api_url,
        options=dict(options or {}),
        secrets=names,
        require_pairing=require_pairing,
        allowlist=list(allowlist or []),
        created_by=created_by,
    )
    session.add(channel)
    session.flush()
    return channel


def update(
    *,
    session: Session,
    channel: Channel,
    kind: str,
    name: str,
    agent: str | None = None,
    workflow: str | None = None,
    api_url: str | None = None,
    options: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    require_pairing: bool = False,
    allowlist: list[str] | None = None,
) -> Channel:
    """Re-declare an existing channel (its messages and paired senders stay)."""
    _one_target(agent, workflow)
    channel.secrets = _checked(kind, name, options or {}, secrets or {})
    channel.agent = agent
    channel.workflow = workflow
    channel.api_url = api_url
    channel.options = dict(options or {})
    channel.require_pairing = require_pairing
    channel.allowlist = list(allowlist or [])
    session.flush()
    return channel


def find(*, session: Session, kind: str, name: str) -> Channel | None:
    return session.scalar(select(Channel).where(Channel.kind == kind, Channel.name == name))


def get(*, session: Session, kind: str, name: str) -> Channel:
    channel = find(session=session, kind=kind, name=name)
    if channel is None:
        raise NotFound(f"no channel {kind}/{name}", fields={"channel": ["not found"]})
    return channel


def list_all(*, session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.kind, Channel.name)))


def remove(*, session: Session, kind: str, name: str) -> None:
    session.delete(get(session=session, kind=kind, name=name))


def config_for(session: Session, settings: Settings, channel: Channel) -> ChannelConfig:
    """The channel with its secrets read from the vault (UnknownSecret names a missing one)."""
    vault = vaults.vault_for(settings)
    plain = {
        role: vaults.get_secret(session=session, vault=vault, name=secret)
        for role, secret in channel.secrets.items()
    }
    return ChannelConfig(
        name=channel.name,
        api_url=(channel.api_url or adapter(channel.kind).default_api_url).rstrip("/"),
        options=channel.options,
        secrets=plain,
    )


def claim(*, session: Session, channel: Channel, message: Inbound) -> ChannelInbound | None:
    """Record a received message once: None when its delivery id was seen before (a replay)."""
    inserted = session.scalar(
        insert(ChannelInbound)
        .values(
            channel_id=channel.id,
            event_id=message.event_id[:200],
            sender=message.sender[:200],
            conversation=message.conversation[:200],
            text=message.text,
            reply_to=message.reply_to,
            extra=message.extra,
            state="received",
        )
        .on_conflict_do_nothing(index_elements=["channel_id", "event_id"])
        .returning(ChannelInbound.id)
    )
    return None if inserted is None else session.get(ChannelInbound, inserted)


def queue_answer(
    *, session: Session, channel: Channel, inbound: ChannelInbound, text: str
) -> ChannelOutbound:
    """An answer to `inbound`, split the way its platform needs, waiting for the `io` queue."""
    row = ChannelOutbound(
        channel_id=channel.id,
        inbound_id=inbound.id,
        conversation=inbound.conversation,
        reply_to=inbound.reply_to,
        extra=inbound.extra,
        chunks=split(text, adapter(channel.kind).limit),
        sent=0,
        state="pending",
        attempts=0,
        refs=[],
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def chat_session(channel: Channel, conversation: str) -> uuid.UUID:
    """One chat session per conversation, stable across messages."""
    return uuid.uuid5(SESSION_NAMESPACE, f"{channel.id}:{conversation}")

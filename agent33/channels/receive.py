"""A webhook call becomes messages for an agent: look the channel up, verify the platform's
signature over the raw bytes, parse, drop replays, and admit or refuse each sender.

Nothing runs before the signature holds, and a delivery id already recorded is ignored, so a
platform's retry (or a replayed request) runs nothing twice. The caller publishes the returned
ids after the commit: `replies` to the agent, `sends` (refusals, pairing answers) to `io`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import structlog
from sqlalchemy.orm import Session

from agent33.channels import pairing, runs, store
from agent33.channels.protocol import BadSignature, ChannelConfig, Received, WebhookRequest
from agent33.channels.registry import adapter
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Channel
from agent33.errors import NotFound, ValidationFailed
from agent33.security.vault import UnknownSecret

log = structlog.get_logger(__name__)
TEXT_ONLY = "I can only read text: send your question as a message."


@dataclass
class Outcome:
    received: Received
    replies: list[int] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    duplicates: int = 0


def _configured(
    session: Session, settings: Settings, kind: str, name: str
) -> tuple[Channel, ChannelConfig]:
    adapter(kind)  # an unknown platform is a 404 like an unknown channel
    channel = store.get(session=session, kind=kind, name=name)
    try:
        return channel, store.config_for(session, settings, channel)
    except UnknownSecret as exc:
        # Without its secret nothing can be verified: the caller is refused (without learning
        # the secret's name), the log says why.
        log.warning("channel.secret_missing", channel=f"{kind}/{name}", error=exc.message)
        raise BadSignature(f"channel {kind}/{name} cannot verify requests yet") from None


def handshake(*, settings: Settings, kind: str, name: str, request: WebhookRequest) -> Received:
    """A platform's GET check of the webhook URL (WhatsApp's `hub.challenge`)."""
    with session_scope() as session:
        _, config = _configured(session, settings, kind, name)
    answer = adapter(kind).handshake(request, config)
    if answer is None:
        raise NotFound(f"{kind} has no GET handshake", fields={"method": ["use POST"]})
    return answer


def receive(
    *, settings: Settings, kind: str, name: str, request: WebhookRequest, now: float | None = None
) -> Outcome:
    platform = adapter(kind)
    with session_scope() as session:
        channel, config = _configured(session, settings, kind, name)
    platform.verify(request, config, time.time() if now is None else now)
    try:
        received = platform.parse(request, config)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            raise ValidationFailed("the body must be JSON", fields={"body": ["not JSON"]}) from None
        raise ValidationFailed(
            f"not a {kind} delivery: {exc}", fields={"body": [f"missing or invalid {exc}"]}
        ) from None
    outcome = Outcome(received=received)
    if not received.messages:
        return outcome
    with session_scope() as session:
        channel = store.get(session=session, kind=kind, name=name)
        for message in received.messages:
            row = store.claim(session=session, channel=channel, message=message)
            if row is None:
                outcome.duplicates += 1
                continue
            admission = pairing.admit(
                settings=settings,
                session=session,
                channel=channel,
                sender=message.sender,
                text=message.text,
            )
            if admission.allowed and not message.text.strip():
                admission = pairing.Admission(False, reply=TEXT_ONLY)
            if admission.allowed:
                row.username = admission.username
                if channel.workflow is None:
                    outcome.replies.append(row.id)
                    continue
                reply, outbox = runs.handle(
                    settings=settings, session=session, channel=channel, row=row
                )
                outcome.outbox.extend(outbox)
                if reply is not None:
                    answer = store.queue_answer(
                        session=session, channel=channel, inbound=row, text=reply
                    )
                    outcome.sends.append(answer.id)
                continue
            row.state = "refused" if admission.reply == pairing.REFUSAL else "handled"
            if admission.reply is not None:
                answer = store.queue_answer(
                    session=session, channel=channel, inbound=row, text=admission.reply
                )
                outcome.sends.append(answer.id)
    return outcome

"""One attempt of one webhook delivery: ordered, signed (Standard Webhooks), retried, and
dead-lettered when its attempts are spent.

The delivery row is locked (SKIP LOCKED) for the attempt, so two messages for one delivery
never send it twice at once; a later event of a run waits until the earlier one to the same
subscription is delivered or dead-lettered, and its sender then publishes the next in line.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field

import requests
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from agent33.automation import dead_letters
from agent33.automation.webhooks_out import OPEN_STATES
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Webhook, WebhookDelivery
from agent33.errors import Agent33Error, NotFound
from agent33.security import vault as vaults
from agent33.security.outbound import REDIRECTS, OutboundFailed, OutboundRequest, send

log = structlog.get_logger(__name__)
MAX_DELAY = 3600.0
GRACE_SECONDS = 60.0
USER_AGENT = "Agent33-Webhooks/1"


@dataclass
class Attempted:
    """What the task does after the commit: publish `retry_in` later, publish `next_ids` now."""

    state: str
    retry_in: float | None = None
    next_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Response:
    ok: bool
    status: int | None
    error: str | None
    retry_after: float | None = None
    gone: bool = False


def backoff(attempts: int, base: float, retry_after: float | None = None) -> float:
    """Exponential backoff (base, 2*base, 4*base, ... at most an hour) with jitter in its upper
    half, never sooner than the receiver's Retry-After."""
    delay: float = min(base * 2.0 ** max(attempts - 1, 0), MAX_DELAY)
    delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not a secret
    return min(max(delay, retry_after or 0.0), MAX_DELAY)


def body_text(delivery: WebhookDelivery) -> str:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _discard(response: requests.Response, deadline: float, timeout: float) -> None:
    return None


def post(settings: Settings, url: str, msg_id: str, secret: str, body: str) -> Response:
    """POST one signed attempt under the outbound policy; only a 2xx is success, redirects are
    not followed (Standard Webhooks treats them as failures)."""
    sent_at = utcnow().replace(microsecond=0)
    timestamp = str(int(sent_at.timestamp()))
    signature = Signer(secret).sign(msg_id, sent_at, body)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    request = OutboundRequest(
        url=url,
        method="POST",
        headers=headers,
        body=body,
        timeout=settings.webhook_timeout,
        expect_status=REDIRECTS,
        secrets=(secret,),
    )
    try:
        reply = send(
            request,
            allowlist=settings.http_allowlist,
            allow_private=settings.http_allow_private,
            reader=_discard,
        )
    except OutboundFailed as exc:
        return Response(ok=False, status=None, error=str(exc))
    if 200 <= reply.status < 300:
        return Response(ok=True, status=reply.status, error=None)
    return Response(
        ok=False,
        status=reply.status,
        error=f"HTTP {reply.status} {reply.reason}".strip(),
        retry_after=_retry_after(reply.headers.get("Retry-After")),
        gone=reply.status == 410,
    )


def _earlier_open(session: Session, delivery: WebhookDelivery) -> bool:
    if delivery.run_id is None:
        return False
    earlier = session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.webhook_id == delivery.webhook_id,
            WebhookDelivery.run_id == delivery.run_id,
            WebhookDelivery.id < delivery.id,
            WebhookDelivery.state.in_(OPEN_STATES),
        )
        .limit(1)
    )
    return earlier is not None


def _next_in_line(session: Session, delivery: WebhookDelivery) -> list[int]:
    if delivery.run_id is None:
        return []
    following = session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.webhook_id == delivery.webhook_id,
            WebhookDelivery.run_id == delivery.run_id,
            WebhookDelivery.id > delivery.id,
            WebhookDelivery.state.in_(OPEN_STATES),
        )
        .order_by(WebhookDelivery.id)
        .limit(1)
    )
    return [following] if following is not None else []


def _give_up(session: Session, delivery: WebhookDelivery, hook: Webhook | None) -> None:
    delivery.state = "dead"
    delivery.next_attempt_at = None
    dead_letters.record(
        session=session,
        kind=dead_letters.WEBHOOK,
        ref=str(delivery.id),
        run_id=delivery.run_id,
        payload={
            "delivery_id": delivery.id,
            "webhook_id": str(delivery.webhook_id),
            "msg_id": delivery.msg_id,
            "url": hook.url if hook is not None else None,
            "event_type": delivery.event_type,
            "body": delivery.payload,
        },
        attempts=delivery.attempts,
        last_error=delivery.last_error,
    )


def _send(
    session: Session, settings: Settings, hook: Webhook, delivery: WebhookDelivery
) -> Response:
    """One POST; a secret gone from the vault (or unreadable) is a failed attempt like any
    other, so the delivery ends as a dead letter instead of failing its task forever."""
    try:
        secret = vaults.get_secret(
            session=session, vault=vaults.vault_for(settings), name=hook.secret_name
        )
    except Agent33Error as exc:
        return Response(ok=False, status=None, error=f"signing secret: {exc}")
    return post(settings, hook.url, delivery.msg_id, secret, body_text(delivery))


def attempt(delivery_id: int, settings: Settings) -> Attempted:
    """Send delivery `delivery_id` once if it is due and first in line; record the result."""
    with session_scope() as session:
        delivery = session.scalar(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(skip_locked=True)
        )
        if delivery is None:
            return Attempted(state="busy_or_gone")
        if delivery.state not in OPEN_STATES:
            return Attempted(state=delivery.state)
        now = utcnow()
        due = delivery.next_attempt_at
        if due is not None and due > now + dt.timedelta(seconds=1):
            return Attempted(state="early")
        if _earlier_open(session, delivery):
            return Attempted(state="waiting")
        hook = session.get(Webhook, delivery.webhook_id)
        if hook is None or not hook.active:
            delivery.last_error = "subscription inactive"
            _give_up(session, delivery, hook)
            return Attempted(state=delivery.state, next_ids=_next_in_line(session, delivery))
        response = _send(session, settings, hook, delivery)
        delivery.attempts += 1
        delivery.last_status = response.status
        delivery.last_error = response.error
        log.info(
            "webhook.attempt",
            delivery_id=delivery.id,
            msg_id=delivery.msg_id,
            attempt=delivery.attempts,
            status=response.status,
            error=response.error,
        )
        if response.ok:
            delivery.state = "delivered"
            delivery.delivered_at = utcnow()
            delivery.next_attempt_at = None
            return Attempted(state=delivery.state, next_ids=_next_in_line(session, delivery))
        if response.gone:
            hook.active = False  # 410 Gone: the receiver asks us to stop
        if response.gone or delivery.attempts >= settings.webhook_max_attempts:
            _give_up(session, delivery, hook)
            return Attempted(state=delivery.state, next_ids=_next_in_line(session, delivery))
        delay = backoff(delivery.attempts, settings.webhook_retry_base, response.retry_after)
        delivery.state = "retrying"
        delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        return Attempted(state=delivery.state, retry_in=delay)


def overdue(*, limit: int = 200) -> list[int]:
    """Open deliveries past their time by more than a grace period: their message was lost (a
    broker outage, a killed worker); the relay publishes them again."""
    cutoff = utcnow() - dt.timedelta(seconds=GRACE_SECONDS)
    with session_scope() as session:
        return list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.state.in_(OPEN_STATES),
                    WebhookDelivery.next_attempt_at < cutoff,
                )
                .order_by(WebhookDelivery.id)
                .limit(limit)
            )
        )


def reopen(*, session: Session, delivery_id: int) -> WebhookDelivery:
    """A dead delivery gets a fresh attempt budget, keeping its `webhook-id` (replay)."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found", fields={"id": ["not found"]})
    delivery.state = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    return delivery

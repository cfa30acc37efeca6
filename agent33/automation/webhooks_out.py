"""Outbound webhook subscriptions, and the delivery rows a run's events become.

`record_event` is called by the engine in the transaction that records a run or step state, so
a delivery exists exactly when the state does; its outbox row publishes it after the commit.
The engine only calls it for rare transitions (a run ending or waiting, a step failing), and a
short per-process cache of "is any subscription active?" keeps even those free of a query
while nobody subscribes.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import OutboxMessage, Run, StepRun, Webhook, WebhookDelivery
from agent33.errors import NotFound, ValidationFailed
from agent33.security import vault as vaults
from agent33.security.outbound import OutboundFailed, check_destination
from agent33.wire import Queue, TaskName

EVENT_TYPES = (
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "run.waiting",
    "step.failed",
    "alert.firing",
    "alert.resolved",
)
RUN_EVENTS = {
    "succeeded": "run.succeeded",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
    "waiting": "run.waiting",
}
OPEN_STATES = ("pending", "retrying")
CACHE_SECONDS = 5.0
SECRET_BYTES = 32
AFTER_COMMIT = "agent33.outbox.after_commit"  # session.info: outbox ids published on commit

_cache: dict[str, float | bool] = {}


def invalidate_cache() -> None:
    """Forget the cached answer (a subscription was added or changed in this process)."""
    _cache.clear()


def any_active(session: Session) -> bool:
    """Whether any subscription is active, asked at most once per CACHE_SECONDS per process."""
    now = time.monotonic()
    checked = _cache.get("at")
    if isinstance(checked, float) and now - checked < CACHE_SECONDS:
        return bool(_cache["value"])
    value = bool(session.scalar(select(exists().where(Webhook.active.is_(True)))))
    _cache.update(at=now, value=value)
    return value


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_target(url: str, settings: Settings) -> None:
    """The URL must pass the outbound HTTP policy (allowlist, address rules) when saved."""
    try:
        check_destination(url, settings.http_allowlist, allow_private=settings.http_allow_private)
    except OutboundFailed as exc:
        raise ValidationFailed(str(exc), fields={"url": [str(exc)]}) from None


def check_events(events: Sequence[str]) -> list[str]:
    unknown = [event for event in events if event not in EVENT_TYPES]
    if unknown or not events:
        message = (
            f"unknown event type {', '.join(map(repr, unknown))}"
            if unknown
            else "at least one event type is required"
        )
        raise ValidationFailed(
            f"{message}; known: {', '.join(EVENT_TYPES)}",
            fields={"events": [f"{message}; known: {', '.join(EVENT_TYPES)}"]},
        )
    return list(dict.fromkeys(events))


def create(
    *,
    session: Session,
    settings: Settings,
    url: str,
    events: Sequence[str],
    workflow: str | None = None,
    description: str | None = None,
    created_by: str | None = None,
) -> tuple[Webhook, str]:
    """Store a subscription and its new secret (in the vault); returns the secret once."""
    wanted = check_events(events)
    check_target(url, settings)
    hook = Webhook(
        id=uuid.uuid4(),
        url=url.strip(),
        events=wanted,
        workflow=workflow,
        description=description,
        created_by=created_by,
        active=True,
    )
    hook.secret_name = f"webhook_{hook.id.hex}"
    secret = new_secret()
    vaults.set_secret(
        session=session, vault=vaults.vault_for(settings), name=hook.secret_name, value=secret
    )
    session.add(hook)
    session.flush()
    invalidate_cache()
    return hook, secret


def get(*, session: Session, webhook_id: uuid.UUID) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} not found", fields={"id": ["not found"]})
    return hook


def list_all(*, session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.created_at)))


def set_active(*, session: Session, webhook_id: uuid.UUID, active: bool) -> Webhook:
    hook = get(session=session, webhook_id=webhook_id)
    hook.active = active
    invalidate_cache()
    return hook


def delete(*, session: Session, webhook_id: uuid.UUID) -> None:
    """Remove a subscription, its secret and its deliveries (dead letters stay)."""
    hook = get(session=session, webhook_id=webhook_id)
    try:
        vaults.delete_secret(session=session, name=hook.secret_name)
    except NotFound:
        pass
    session.delete(hook)
    invalidate_cache()


def summary(run: Run, step: StepRun | None, message: str | None) -> dict[str, Any]:
    """What a receiver is told: ids and states, never inputs or outputs (thin payloads)."""
    data: dict[str, Any] = {
        "run_id": str(run.id),
        "workflow": run.workflow_name,
        "version": run.workflow_version,
        "state": run.state,
        "error": run.error,
        "message": message,
    }
    if step is not None:
        data["step"] = {"id": step.step_id, "state": step.state, "error": step.error}
    return data


def record_event(
    *,
    session: Session,
    run: Run,
    event_type: str,
    step: StepRun | None = None,
    message: str | None = None,
) -> list[int]:
    """One delivery per matching subscription, and an outbox row publishing each (published
    right after the commit; by the relay if that fails). Returns the outbox ids."""
    body = {"type": event_type, "timestamp": _timestamp(), "data": summary(run, step, message)}
    deliveries = _deliveries(session, event_type, run.workflow_name, body, run_id=run.id)
    if not deliveries:
        return []
    rows = [
        OutboxMessage(run_id=run.id, payload=delivery_message(delivery.id))
        for delivery in deliveries
    ]
    session.add_all(rows)
    session.flush()
    ids = [row.id for row in rows]
    session.info.setdefault(AFTER_COMMIT, []).extend(ids)
    return ids


def record_alert(
    *, session: Session, event_type: str, data: dict[str, Any], workflow: str | None = None
) -> list[int]:
    """One delivery per subscription to `event_type` (`alert.firing`/`alert.resolved`; a
    subscription's workflow filter matches the rule's workflow). Returns the delivery ids:
    there is no run for an outbox row, so the caller publishes them after its commit
    (`tasks.dispatch.publish_delivery`), and the relay sends any it missed once overdue."""
    body = {"type": event_type, "timestamp": _timestamp(), "data": data}
    return [d.id for d in _deliveries(session, event_type, workflow, body, run_id=None)]


def _timestamp() -> str:
    return utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _deliveries(
    session: Session,
    event_type: str,
    workflow: str | None,
    body: dict[str, Any],
    *,
    run_id: uuid.UUID | None,
) -> list[WebhookDelivery]:
    if not any_active(session):
        return []
    hooks = [
        hook
        for hook in session.scalars(select(Webhook).where(Webhook.active.is_(True)))
        if event_type in hook.events and hook.workflow in (None, workflow)
    ]
    if not hooks:
        return []
    deliveries = [
        WebhookDelivery(
            msg_id=f"msg_{uuid.uuid4().hex}",
            webhook_id=hook.id,
            run_id=run_id,
            event_type=event_type,
            payload=body,
            state="pending",
            attempts=0,
            next_attempt_at=utcnow(),
        )
        for hook in hooks
    ]
    session.add_all(deliveries)
    session.flush()
    return deliveries


def delivery_message(delivery_id: int, countdown: float | None = None) -> dict[str, Any]:
    """The outbox payload that publishes one delivery attempt on the `io` queue."""
    payload: dict[str, Any] = {
        "task": TaskName.WEBHOOK_DELIVER.value,
        "queue": Queue.IO.value,
        "kwargs": {"delivery_id": delivery_id},
    }
    if countdown:
        payload["countdown"] = countdown
    return payload

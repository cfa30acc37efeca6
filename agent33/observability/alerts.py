"""Alert evaluation: what beat's `agent33.maintenance.evaluate_alerts` tick does, and the
listing the API and CLI show.

Each rule is evaluated in its own transaction with its `alert_states` row locked, so two beats
ticking at once take turns; an incident opens once (a partial unique index allows one open
incident per rule) and stays open, without further events, until a tick sees the condition
clear. Firing and resolving each record one outbound webhook delivery per subscription
(`alert.firing` / `alert.resolved`) in the same transaction, and count in
`agent33_alerts_total` once it commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from agent33.automation import webhooks_out
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import AlertIncident, AlertState
from agent33.errors import Agent33Error
from agent33.observability import metrics
from agent33.observability.alert_checks import Measurement, measure
from agent33.observability.alert_rules import AlertRule, load_rules

log = structlog.get_logger(__name__)
FIRING = "alert.firing"
RESOLVED = "alert.resolved"


@dataclass
class TickResult:
    """What a tick did; publish `delivery_ids` (webhook deliveries) after it."""

    evaluated: int = 0
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    delivery_ids: list[int] = field(default_factory=list)


def tick(settings: Settings, *, now: dt.datetime | None = None) -> TickResult:
    """Evaluate every rule once; a broken rule file is logged and evaluates nothing."""
    moment = now or utcnow()
    result = TickResult()
    try:
        rules = load_rules(settings)
    except Agent33Error as exc:
        log.error("alerts.rules_invalid", error=exc.message)
        result.failed.append("rules")
        return result
    for rule in rules:
        try:
            with session_scope() as session:
                evaluate(session=session, settings=settings, rule=rule, now=moment, result=result)
        except Exception:  # one broken rule must not stop the others; the next tick retries
            log.exception("alerts.evaluate_failed", rule=rule.name)
            result.failed.append(rule.name)
        else:
            result.evaluated += 1
    with session_scope() as session:
        _resolve_removed(session, {rule.name for rule in rules}, moment, result)
    return result


def _locked_state(session: Session, rule: AlertRule) -> AlertState:
    session.execute(
        insert(AlertState)
        .values(rule=rule.name, kind=rule.kind, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["rule"])
    )
    state = session.scalar(select(AlertState).where(AlertState.rule == rule.name).with_for_update())
    assert state is not None  # inserted above unless it was there
    return state


def open_incident(session: Session, rule: str) -> AlertIncident | None:
    return session.scalar(
        select(AlertIncident).where(AlertIncident.rule == rule, AlertIncident.resolved_at.is_(None))
    )


def evaluate(
    *,
    session: Session,
    settings: Settings,
    rule: AlertRule,
    now: dt.datetime,
    result: TickResult,
) -> None:
    """Measure `rule`, then open (fire) or close (resolve) its incident when that changed."""
    state = _locked_state(session, rule)
    measured = measure(rule, session=session, settings=settings, now=now)
    state.kind = rule.kind
    state.value = measured.value
    state.checked_at = now
    incident = open_incident(session, rule.name)
    if measured.breached:
        if state.pending_since is None:
            state.pending_since = now
        held = (now - state.pending_since).total_seconds()
        if incident is None and held >= rule.for_seconds:
            _fire(session, rule, measured, now, result)
    else:
        state.pending_since = None
        if incident is not None:
            _resolve(session, incident, measured.value, measured.message, now, result, rule)


def _payload(incident: AlertIncident, rule: AlertRule | None) -> dict[str, Any]:
    return {
        "rule": incident.rule,
        "kind": incident.kind,
        "incident_id": incident.id,
        "state": "resolved" if incident.resolved_at else "firing",
        "value": incident.value,
        "threshold": incident.threshold,
        "message": incident.message,
        "details": incident.details,
        "workflow": rule.workflow if rule else None,
        "queue": rule.queue if rule else None,
        "fired_at": incident.fired_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "resolved_value": incident.resolved_value,
    }


def _fire(
    session: Session, rule: AlertRule, measured: Measurement, now: dt.datetime, result: TickResult
) -> None:
    incident = AlertIncident(
        rule=rule.name,
        kind=rule.kind,
        threshold=rule.threshold,
        value=measured.value if measured.value is not None else 0.0,
        message=measured.message,
        details=measured.details,
        fired_at=now,
    )
    session.add(incident)
    session.flush()
    result.delivery_ids += webhooks_out.record_alert(
        session=session, event_type=FIRING, data=_payload(incident, rule), workflow=rule.workflow
    )
    metrics.after_commit(session.info, metrics.alert_event, rule.name, "firing")
    result.fired.append(rule.name)
    log.warning("alert.firing", rule=rule.name, value=measured.value, message=measured.message)


def _resolve(
    session: Session,
    incident: AlertIncident,
    value: float | None,
    message: str,
    now: dt.datetime,
    result: TickResult,
    rule: AlertRule | None,
) -> None:
    incident.resolved_at = now
    incident.resolved_value = value
    session.flush()
    data = {**_payload(incident, rule), "resolution": message}
    result.delivery_ids += webhooks_out.record_alert(
        session=session,
        event_type=RESOLVED,
        data=data,
        workflow=rule.workflow if rule else None,
    )
    metrics.after_commit(session.info, metrics.alert_event, incident.rule, "resolved")
    result.resolved.append(incident.rule)
    log.info("alert.resolved", rule=incident.rule, value=value)


def _resolve_removed(
    session: Session, names: set[str], now: dt.datetime, result: TickResult
) -> None:
    """Incidents of rules no longer defined resolve: nothing would ever close them."""
    orphans = session.scalars(
        select(AlertIncident)
        .where(AlertIncident.resolved_at.is_(None), AlertIncident.rule.not_in(names))
        .with_for_update(skip_locked=True)
    )
    for incident in orphans:
        _resolve(session, incident, None, "the rule was removed", now, result, None)


def listing(*, session: Session, settings: Settings) -> list[dict[str, Any]]:
    """Every defined rule with its state (`ok`, `pending`, `firing`), last value and check,
    and its open or else latest incident."""
    rules = load_rules(settings)
    states = {s.rule: s for s in session.scalars(select(AlertState))}
    latest_of = {
        incident.rule: incident
        for incident in session.scalars(
            select(AlertIncident)
            .where(AlertIncident.rule.in_([rule.name for rule in rules]))
            .ext(distinct_on(AlertIncident.rule))
            .order_by(AlertIncident.rule, AlertIncident.fired_at.desc(), AlertIncident.id.desc())
        )
    }
    items = []
    for rule in rules:
        state = states.get(rule.name)
        latest = latest_of.get(rule.name)
        firing = latest is not None and latest.resolved_at is None
        pending = state is not None and state.pending_since is not None
        items.append(
            {
                **rule.as_dict(),
                "state": "firing" if firing else "pending" if pending else "ok",
                "value": state.value if state else None,
                "checked_at": state.checked_at if state else None,
                "pending_since": state.pending_since if state else None,
                "last_incident": _payload(latest, rule) if latest is not None else None,
            }
        )
    return items

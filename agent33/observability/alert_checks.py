"""What an alert rule measures, read from what is already recorded: one query (or one broker
read) per rule, so evaluating every rule each beat tick stays cheap.

A measurement with too little data (fewer ended runs than `min_count`, a broker that does not
answer) does not breach: an alert should mean something is wrong, not that nothing ran.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import DeadLetter, Run, StepRun
from agent33.observability import metrics
from agent33.observability.alert_rules import (
    DEAD_LETTERS,
    FAILURE_RATE,
    QUEUE_DEPTH,
    STEP_LATENCY,
    AlertRule,
)

ENDED_RUNS = ("succeeded", "failed")
ENDED_STEPS = ("succeeded", "failed")


@dataclass(frozen=True)
class Measurement:
    value: float | None  # None: nothing to judge (no data, broker unreachable)
    breached: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _since(rule: AlertRule, now: dt.datetime) -> dt.datetime | None:
    return now - dt.timedelta(seconds=rule.window) if rule.window else None


def _scope(rule: AlertRule) -> str:
    parts = [f"workflow {rule.workflow}" if rule.workflow else "all workflows"]
    if rule.action:
        parts.append(f"action {rule.action}")
    return ", ".join(parts)


def failure_rate(session: Session, rule: AlertRule, now: dt.datetime) -> Measurement:
    """Failed / ended runs (succeeded or failed) that finished in the window."""
    failed = func.count(case((Run.state == "failed", 1)))
    query = select(failed, func.count()).where(Run.state.in_(ENDED_RUNS))
    since = _since(rule, now)
    if since is not None:
        query = query.where(Run.finished_at >= since)
    if rule.workflow:
        query = query.where(Run.workflow_name == rule.workflow)
    failures, ended = session.execute(query).one()
    details = {"failed": failures, "ended": ended, "window": rule.window}
    if ended < rule.min_count:
        return Measurement(None, False, f"{ended} ended runs ({_scope(rule)})", details)
    rate = failures / ended
    return Measurement(
        rate,
        rate > rule.threshold,
        f"{failures} of {ended} runs failed ({rate:.0%}) in {rule.window:g} s, {_scope(rule)}; "
        f"threshold {rule.threshold:.0%}",
        details,
    )


def step_latency(session: Session, rule: AlertRule, now: dt.datetime) -> Measurement:
    """The 95th percentile of run time (start to end) of steps that ended in the window."""
    seconds = func.extract("epoch", StepRun.finished_at - StepRun.started_at)
    p95 = func.percentile_cont(0.95).within_group(cast(seconds, Float))
    query = select(p95, func.count()).where(
        StepRun.state.in_(ENDED_STEPS), StepRun.started_at.is_not(None)
    )
    since = _since(rule, now)
    if since is not None:
        query = query.where(StepRun.finished_at >= since)
    if rule.action:
        query = query.where(StepRun.action == rule.action)
    if rule.workflow:
        query = query.join(Run, Run.id == StepRun.run_id).where(Run.workflow_name == rule.workflow)
    value, count = session.execute(query).one()
    details = {"steps": count, "window": rule.window}
    if count < rule.min_count or value is None:
        return Measurement(None, False, f"{count} ended steps ({_scope(rule)})", details)
    return Measurement(
        float(value),
        float(value) > rule.threshold,
        f"step p95 {float(value):.3g} s over {count} steps in {rule.window:g} s, "
        f"{_scope(rule)}; threshold {rule.threshold:g} s",
        details,
    )


def queue_depth(settings: Settings, rule: AlertRule) -> Measurement:
    """Messages waiting in the rule's queue now (Redis brokers; others report nothing)."""
    queue = rule.queue or ""
    collector = metrics.queue_collector(settings, [queue])
    depth: float | None = None
    if collector is not None:
        for family in collector.collect():
            for sample in family.samples:
                depth = sample.value
    if depth is None:
        return Measurement(None, False, f"queue {queue}: depth unknown", {"queue": queue})
    return Measurement(
        depth,
        depth > rule.threshold,
        f"queue {queue} holds {depth:g} messages; threshold {rule.threshold:g}",
        {"queue": queue},
    )


def dead_letters(session: Session, rule: AlertRule, now: dt.datetime) -> Measurement:
    """Dead letters not replayed (that arrived in the window, when the rule has one)."""
    where: list[ColumnElement[bool]] = [DeadLetter.replayed_at.is_(None)]
    since = _since(rule, now)
    if since is not None:
        where.append(DeadLetter.created_at >= since)
    kinds = {
        str(kind): int(n)
        for kind, n in session.execute(
            select(DeadLetter.kind, func.count()).where(*where).group_by(DeadLetter.kind)
        )
    }
    count = sum(kinds.values())
    return Measurement(
        float(count),
        count > rule.threshold,
        f"{count} dead letters not replayed; threshold {rule.threshold:g}",
        {"by_kind": kinds, "window": rule.window},
    )


def measure(
    rule: AlertRule, *, session: Session, settings: Settings, now: dt.datetime
) -> Measurement:
    if rule.kind == FAILURE_RATE:
        return failure_rate(session, rule, now)
    if rule.kind == STEP_LATENCY:
        return step_latency(session, rule, now)
    if rule.kind == QUEUE_DEPTH:
        return queue_depth(settings, rule)
    if rule.kind == DEAD_LETTERS:
        return dead_letters(session, rule, now)
    raise ValueError(f"unknown alert kind {rule.kind!r}")

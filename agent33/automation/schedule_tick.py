"""Firing due slots: what beat's `agent33.maintenance.fire_schedules` tick does.

Exactly once per slot without trusting that one beat runs: each schedule is handled in its own
transaction under `SELECT ... FOR UPDATE SKIP LOCKED` (a concurrent tick skips it), a slot's
`schedule_fires` row is inserted with `ON CONFLICT DO NOTHING` on (schedule_id, fire_time), and
its run is created in that same transaction under the idempotency key
`schedule:<id>:<slot>`. A second tick, a restarted beat or a redelivered tick finds the row and
starts nothing; a tick that dies mid-way rolls back and the next one redoes the slot.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from agent33.automation.schedule_store import timing_of
from agent33.automation.schedules import next_slot, slots_before, slots_from
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Run, Schedule, ScheduleFire
from agent33.engine.lifecycle import cancel_run
from agent33.engine.service import start_run
from agent33.engine.states import RUN_TERMINAL
from agent33.errors import Agent33Error, Conflict

log = structlog.get_logger(__name__)


@dataclass
class FireResult:
    """What one schedule's transaction did; publish `outbox_ids` and revoke `revoke_task_ids`
    after its commit."""

    fired: int = 0
    skipped: int = 0
    queued: int = 0
    failed: int = 0
    outbox_ids: list[int] = field(default_factory=list)
    revoke_task_ids: list[str] = field(default_factory=list)
    run_ids: list[uuid.UUID] = field(default_factory=list)

    def add(self, other: FireResult) -> None:
        self.fired += other.fired
        self.skipped += other.skipped
        self.queued += other.queued
        self.failed += other.failed
        self.outbox_ids += other.outbox_ids
        self.revoke_task_ids += other.revoke_task_ids
        self.run_ids += other.run_ids


def tick(
    settings: Settings,
    *,
    after_commit: Callable[[FireResult], None],
    now: dt.datetime | None = None,
) -> FireResult:
    """Handle every schedule with a due slot or a waiting (queued) fire, one transaction each."""
    moment = now or utcnow()
    total = FireResult()
    with session_scope() as session:
        ids = list(session.scalars(_due_ids(moment)))
    for schedule_id in ids:
        try:
            with session_scope() as session:
                result = fire_schedule(
                    session=session, settings=settings, schedule_id=schedule_id, now=moment
                )
        except Exception:  # one broken schedule must not stop the others; the next tick retries
            log.exception("schedule.tick_failed", schedule_id=str(schedule_id))
            continue
        after_commit(result)
        total.add(result)
    return total


def _due_ids(now: dt.datetime) -> Any:
    waiting = select(ScheduleFire.schedule_id).where(ScheduleFire.status == "pending")
    return select(Schedule.id).where(
        Schedule.paused.is_(False),
        or_(Schedule.next_fire_at <= now, Schedule.id.in_(waiting)),
    )


def fire_schedule(
    *, session: Session, settings: Settings, schedule_id: uuid.UUID, now: dt.datetime
) -> FireResult:
    """Fire one schedule's due slots (its row locked; skipped if another tick holds it)."""
    result = FireResult()
    schedule = session.scalar(
        select(Schedule).where(Schedule.id == schedule_id).with_for_update(skip_locked=True)
    )
    if schedule is None or schedule.paused:
        return result
    _start_waiting(session, settings, schedule, result)
    if schedule.next_fire_at is None or schedule.next_fire_at > now:
        return result
    timing = timing_of(schedule)
    cutoff = now - dt.timedelta(seconds=settings.schedule_misfire_grace)
    for slot in _missed(schedule, cutoff, settings.schedule_max_catchup):
        _fire(session, settings, schedule, slot, result, catchup=True)
    for slot in slots_from(timing, max(schedule.next_fire_at, cutoff)):
        if slot > now:
            break
        _fire(session, settings, schedule, slot, result)
    schedule.next_fire_at = next_slot(timing, now, inclusive=False)
    return result


def _missed(schedule: Schedule, cutoff: dt.datetime, most: int) -> list[dt.datetime]:
    """Slots older than the grace that `catchup` fires (ascending); the rest are dropped."""
    first = schedule.next_fire_at
    assert first is not None
    if first >= cutoff or schedule.catchup == "skip":
        return []
    count = 1 if schedule.catchup == "once" else most
    latest: list[dt.datetime] = []
    for slot in slots_before(timing_of(schedule), cutoff):
        if slot < first or len(latest) == count:
            break
        latest.append(slot)
    return sorted(latest)


def trigger_now(*, session: Session, settings: Settings, schedule: Schedule) -> FireResult:
    """A run now, outside the slots (`manual` in its trigger), whatever the overlap policy.

    Raises what `start_run` raises (workflow gone, inputs no longer valid)."""
    result = FireResult()
    moment = utcnow()
    if moment.microsecond == 0:  # slots fall on whole seconds: a manual fire never takes one
        moment += dt.timedelta(microseconds=1)
    _fire(session, settings, schedule, moment, result, manual=True)
    return result


def active_runs(session: Session, schedule_id: uuid.UUID) -> list[uuid.UUID]:
    """Runs this schedule started that have not finished."""
    return list(
        session.scalars(
            select(Run.id)
            .join(ScheduleFire, ScheduleFire.run_id == Run.id)
            .where(ScheduleFire.schedule_id == schedule_id, Run.state.not_in(RUN_TERMINAL))
        )
    )


def _start_waiting(
    session: Session, settings: Settings, schedule: Schedule, result: FireResult
) -> None:
    """`overlap: queue`: start the oldest waiting fire once the schedule's runs have ended."""
    waiting = session.scalar(
        select(ScheduleFire)
        .where(ScheduleFire.schedule_id == schedule.id, ScheduleFire.status == "pending")
        .order_by(ScheduleFire.fire_time)
        .limit(1)
    )
    if waiting is None or active_runs(session, schedule.id):
        return
    _start(session, settings, schedule, waiting, result)


def _fire(
    session: Session,
    settings: Settings,
    schedule: Schedule,
    slot: dt.datetime,
    result: FireResult,
    *,
    catchup: bool = False,
    manual: bool = False,
) -> None:
    status, reason = "fired", None
    active = [] if manual or schedule.overlap == "allow" else active_runs(session, schedule.id)
    if schedule.overlap == "skip" and active:
        status, reason = "skipped", "overlap: a previous run has not finished"
    elif schedule.overlap == "queue" and not manual and (active or _waiting(session, schedule)):
        if _waiting(session, schedule) >= settings.schedule_max_catchup:
            status, reason = "skipped", "overlap: the queue is full"
        else:
            status, reason = "pending", "overlap: waits for the previous run"
    fire_id = session.scalar(
        insert(ScheduleFire)
        .values(
            schedule_id=schedule.id,
            fire_time=slot,
            status=status,
            reason=reason,
            manual=manual,
            catchup=catchup,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["schedule_id", "fire_time"])
        .returning(ScheduleFire.id)
    )
    if fire_id is None:
        return  # another tick handled this slot
    if status == "skipped":
        result.skipped += 1
        log.info("schedule.skipped", schedule=schedule.name, slot=slot.isoformat(), reason=reason)
        return
    if status == "pending":
        result.queued += 1
        return
    if schedule.overlap == "cancel_previous" and not manual:
        for run_id in active:
            try:
                control = cancel_run(session=session, run_id=run_id, by=f"schedule {schedule.name}")
            except Conflict:  # it finished meanwhile
                continue
            result.revoke_task_ids += control.revoke_task_ids
    fire = session.get_one(ScheduleFire, fire_id)
    _start(session, settings, schedule, fire, result)


def _waiting(session: Session, schedule: Schedule) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule.id, ScheduleFire.status == "pending")
        )
        or 0
    )


def _start(
    session: Session,
    settings: Settings,
    schedule: Schedule,
    fire: ScheduleFire,
    result: FireResult,
) -> None:
    """Start the fire's run in this transaction; a workflow that is gone or refuses the inputs
    marks the fire failed (the schedule goes on)."""
    slot = fire.fire_time.astimezone(dt.UTC).isoformat()
    trigger: dict[str, Any] = {
        "kind": "schedule",
        "schedule": schedule.name,
        "schedule_id": str(schedule.id),
        "slot": slot,
    }
    if fire.manual:
        trigger["manual"] = True
    if fire.catchup:
        trigger["catchup"] = True
    try:
        with session.begin_nested():
            run, outbox_ids, _ = start_run(
                session=session,
                settings=settings,
                workflow_name=schedule.workflow,
                inputs=dict(schedule.inputs),
                idempotency_key=f"schedule:{schedule.id}:{slot}",
                created_by=f"schedule:{schedule.name}",
                trigger=trigger,
            )
    except Agent33Error as exc:
        if fire.manual:
            raise  # the caller asked for this run: tell them why there is none
        fire.status, fire.reason = "failed", exc.message[:500]
        result.failed += 1
        log.warning("schedule.fire_failed", schedule=schedule.name, slot=slot, error=exc.message)
        return
    fire.status, fire.reason, fire.run_id = "fired", None, run.id
    if schedule.last_fire_at is None or fire.fire_time > schedule.last_fire_at:
        schedule.last_fire_at = fire.fire_time
    result.fired += 1
    result.outbox_ids += outbox_ids
    result.run_ids.append(run.id)
    log.info("schedule.fired", schedule=schedule.name, slot=slot, run_id=str(run.id))

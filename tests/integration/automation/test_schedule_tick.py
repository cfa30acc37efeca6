"""The tick's decisions at chosen moments: each slot once, overlap and catch-up policies, and
concurrent ticks that must not fire a slot twice (real PostgreSQL; runs are not executed)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest

from agent33.automation import schedule_tick
from agent33.config import Settings
from agent33.db import session_scope
from tests.integration.automation.helpers import (
    finish_runs,
    fires,
    make_schedule,
    runs_of,
    schedule_row,
)

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db")]
T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def secs(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def tick(settings: Settings, at: dt.datetime) -> schedule_tick.FireResult:
    return schedule_tick.tick(settings, after_commit=lambda _: None, now=at)


def test_each_slot_fires_once_with_its_trigger_and_key(settings: Settings) -> None:
    sid = make_schedule(T0, every=5, overlap="allow", inputs={"n": 3})
    assert schedule_row(sid).next_fire_at == T0
    for moment in (T0, T0 + secs(1), T0 + secs(5.2), T0 + secs(5.2), T0 + secs(11)):
        tick(settings, moment)
    runs = runs_of("every-5")
    assert [r.trigger["slot"] for r in runs] == [(T0 + secs(k)).isoformat() for k in (0, 5, 10)]
    first = runs[0]
    assert first.trigger == {
        "kind": "schedule",
        "schedule": "every-5",
        "schedule_id": str(sid),
        "slot": T0.isoformat(),
    }
    assert first.idempotency_key == f"schedule:{sid}:{T0.isoformat()}"
    assert first.inputs == {"n": 3} and first.created_by == "schedule:every-5"
    row = schedule_row(sid)
    assert row.last_fire_at == T0 + secs(10) and row.next_fire_at == T0 + secs(15)


def test_concurrent_ticks_fire_every_slot_exactly_once(settings: Settings) -> None:
    sid = make_schedule(T0, every=1, overlap="allow", catchup="all")
    moments = [T0 + secs(k / 2) for k in range(0, 21)]
    errors: list[BaseException] = []

    def beat(offset: float) -> None:
        try:
            for moment in moments:
                tick(settings, moment + secs(offset))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=beat, args=(k * 0.01,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    slots = Counter(r.trigger["slot"] for r in runs_of("every-5"))
    assert sorted(slots) == [(T0 + secs(k)).isoformat() for k in range(11)]
    assert set(slots.values()) == {1}
    assert len(fires(sid)) == 11


def test_overlap_skip_records_the_slot_skipped_while_a_run_is_unfinished(
    settings: Settings,
) -> None:
    sid = make_schedule(T0, every=5, overlap="skip")
    tick(settings, T0)
    tick(settings, T0 + secs(5))
    finish_runs()
    tick(settings, T0 + secs(10))
    assert [(f.status, f.run_id is not None) for f in fires(sid)] == [
        ("fired", True),
        ("skipped", False),
        ("fired", True),
    ]
    assert "overlap" in (fires(sid)[1].reason or "")


def test_overlap_queue_starts_waiting_slots_in_order_once_the_previous_ends(
    settings: Settings,
) -> None:
    sid = make_schedule(T0, every=5, overlap="queue")
    for k in (0, 5, 10):
        tick(settings, T0 + secs(k))
    assert [f.status for f in fires(sid)] == ["fired", "pending", "pending"]
    tick(settings, T0 + secs(11))  # the first run has not ended: nothing starts
    assert len(runs_of("every-5")) == 1
    finish_runs()
    tick(settings, T0 + secs(12))
    assert [f.status for f in fires(sid)] == ["fired", "fired", "pending"]
    finish_runs()
    tick(settings, T0 + secs(13))
    runs = runs_of("every-5")
    assert [r.trigger["slot"] for r in runs] == [(T0 + secs(k)).isoformat() for k in (0, 5, 10)]


def test_overlap_cancel_previous_cancels_the_running_one_then_starts(settings: Settings) -> None:
    make_schedule(T0, every=5, overlap="cancel_previous")
    tick(settings, T0)
    result = tick(settings, T0 + secs(5))
    assert result.fired == 1
    first, second = runs_of("every-5")
    assert first.state == "cancelled" and second.state == "pending"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("skip", []), ("once", [29]), ("all", [20, 21, 22, 23, 24, 25, 26, 27, 28, 29])],
)
def test_catchup_after_downtime(settings: Settings, policy: str, expected: list[int]) -> None:
    """The tick stops at T0; the next comes at T0+45 s (grace 15 s): slots 1-29 s were missed,
    30-45 s are on time and fire whatever the policy; `all` is bounded by max_catchup (10)."""
    sid = make_schedule(T0, every=1, overlap="allow", catchup=policy)
    tick(settings, T0)
    tick(settings, T0 + secs(45))
    fired = [r.trigger for r in runs_of("every-5")]
    caught = [int((dt.datetime.fromisoformat(t["slot"]) - T0).total_seconds()) for t in fired]
    assert caught == [0, *expected, *range(30, 46)]
    assert [t.get("catchup", False) for t in fired].count(True) == len(expected)
    assert schedule_row(sid).next_fire_at == T0 + secs(46)


def test_paused_schedules_do_not_fire_and_resume_from_now(settings: Settings) -> None:
    from agent33.automation.schedule_store import get_schedule, set_paused

    sid = make_schedule(T0, every=5, overlap="allow")
    with session_scope() as session:
        set_paused(
            session=session, schedule=get_schedule(session=session, name="every-5"), paused=True
        )
    tick(settings, T0 + secs(20))
    assert fires(sid) == []
    with session_scope() as session:
        row = get_schedule(session=session, name="every-5")
        set_paused(session=session, schedule=row, paused=False, now=T0 + secs(21))
    assert schedule_row(sid).next_fire_at == T0 + secs(25)


def test_a_fire_whose_workflow_refuses_the_inputs_is_recorded_failed(settings: Settings) -> None:
    from tests.integration.automation.helpers import QUICK
    from tests.integration.engine.helpers import save

    sid = make_schedule(T0, every=5, overlap="allow", inputs={"n": 1})
    save({**QUICK, "version": 2, "inputs": {"type": "object", "required": ["m"]}})
    result = tick(settings, T0)
    assert result.failed == 1 and runs_of("every-5") == []
    (fire,) = fires(sid)
    assert fire.status == "failed" and "m" in (fire.reason or "")
    assert schedule_row(sid).next_fire_at == T0 + secs(5)

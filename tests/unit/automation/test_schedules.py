"""Slot computation: cron in a zone across DST jumps, `every` intervals, bounds, validation."""

from __future__ import annotations

import datetime as dt
from itertools import islice

import pytest

from agent33.automation.schedules import (
    Timing,
    check_cron,
    next_slot,
    slots_before,
    slots_from,
    upcoming,
    zone,
)

pytestmark = pytest.mark.automation
UTC = dt.UTC
BERLIN = zone("Europe/Berlin")


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def cron(expression: str, tz: str = "Europe/Berlin", **bounds: dt.datetime) -> Timing:
    return Timing(cron=expression, timezone=tz, every=None, anchor=at(2026, 1, 1), **bounds)


def walls(slots: list[dt.datetime]) -> list[str]:
    return [s.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for s in slots]


def test_spring_forward_skipped_wall_times_fire_once_at_the_jump() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    slots = list(islice(slots_from(cron("*/30 * * * *"), at(2026, 3, 28, 23, 30)), 5))
    assert walls(slots) == [
        "03-29 00:30+0100",
        "03-29 01:00+0100",
        "03-29 01:30+0100",
        "03-29 03:00+0200",  # 02:00, 02:30 and 03:00 are one instant: fired once
        "03-29 03:30+0200",
    ]


def test_a_daily_slot_inside_the_skipped_hour_still_fires_that_day() -> None:
    slots = list(islice(slots_from(cron("30 2 * * *"), at(2026, 3, 27)), 3))
    assert walls(slots) == ["03-27 02:30+0100", "03-28 02:30+0100", "03-29 03:00+0200"]
    assert slots[2] - slots[1] == dt.timedelta(hours=23, minutes=30)


def test_fall_back_repeated_wall_times_fire_once_at_their_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 happens twice.
    slots = list(islice(slots_from(cron("*/30 * * * *"), at(2026, 10, 24, 23, 30)), 5))
    assert walls(slots) == [
        "10-25 01:30+0200",
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 03:00+0100",
        "10-25 03:30+0100",
    ]
    daily = list(islice(slots_from(cron("30 2 * * *"), at(2026, 10, 24)), 3))
    assert walls(daily) == ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"]


def test_descending_walk_agrees_with_ascending_across_both_jumps() -> None:
    timing = cron("*/20 * * * *")
    spring = (at(2026, 3, 28, 22), at(2026, 3, 29, 3))
    fall = (at(2026, 10, 24, 22), at(2026, 10, 25, 4))
    for start, end in (spring, fall):
        forward = [s for s in islice(slots_from(timing, start), 40) if s < end]
        backward: list[dt.datetime] = []
        for slot in slots_before(timing, end):
            if slot < start:
                break
            backward.append(slot)
        assert forward == backward[::-1]
        assert forward == sorted(set(forward))


def test_cron_in_utc_and_other_zones() -> None:
    assert next_slot(cron("0 9 * * 1", tz="UTC"), at(2026, 12, 4)) == at(2026, 12, 7, 9)
    new_york = next_slot(cron("0 9 * * *", tz="America/New_York"), at(2026, 12, 4, 15))
    assert new_york == at(2026, 12, 5, 14)


def test_every_counts_from_its_anchor_and_respects_bounds() -> None:
    timing = Timing(
        cron=None,
        timezone="UTC",
        every=5,
        anchor=at(2026, 1, 1),
        start_at=at(2026, 1, 1),
        end_at=at(2026, 1, 1, 0, 0, 20),
    )
    assert list(slots_from(timing, at(2026, 1, 1, 0, 0, 7))) == [
        at(2026, 1, 1, 0, 0, 10),
        at(2026, 1, 1, 0, 0, 15),
        at(2026, 1, 1, 0, 0, 20),
    ]
    assert next_slot(timing, at(2026, 1, 1, 0, 0, 10)) == at(2026, 1, 1, 0, 0, 10)
    assert next_slot(timing, at(2026, 1, 1, 0, 0, 10), inclusive=False) == at(2026, 1, 1, 0, 0, 15)
    assert list(slots_before(timing, at(2026, 1, 1, 0, 0, 12))) == [
        at(2026, 1, 1, 0, 0, 10),
        at(2026, 1, 1, 0, 0, 5),
        at(2026, 1, 1),
    ]
    assert list(slots_before(timing, at(2026, 1, 2)))[0] == at(2026, 1, 1, 0, 0, 20)
    assert next_slot(timing, at(2026, 1, 1, 0, 0, 21)) is None


def test_a_start_date_holds_back_cron_slots_and_upcoming_is_after_now() -> None:
    timing = cron("0 * * * *", tz="UTC", start_at=at(2026, 6, 1))
    assert upcoming(timing, at(2026, 5, 1), 2) == [at(2026, 6, 1), at(2026, 6, 1, 1)]
    assert upcoming(cron("0 * * * *", tz="UTC"), at(2026, 6, 1, 1), 1) == [at(2026, 6, 1, 2)]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("61 * * * *", "not a valid cron"),
        ("0 0 31 2 *", "never matches"),
        ("@daily", "expected 5 fields"),
    ],
)
def test_invalid_cron_expressions_are_named(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_cron(expression)


def test_cron_is_normalised_and_unknown_zones_refused() -> None:
    assert check_cron(" */5  *  * * 1-5 ") == "*/5 * * * 1-5"
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("../etc/passwd")

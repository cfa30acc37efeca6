"""When a schedule's slots fall: pure functions of a `Timing` and a moment, no database.

A cron slot is a wall-clock time in the schedule's zone. A wall time that a DST jump skips
fires at the jump (02:30 on the spring day in Europe/Berlin fires at 03:00 CEST); a wall time
that occurs twice fires at its first occurrence. Slots are returned as UTC instants, ascending
(or descending from `slots_before`), each once. `every` schedules count seconds from their
anchor, untouched by DST.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

UTC = dt.UTC
# Enough to cover a DST fold (at most a few hours in any zone) when starting a wall-clock walk.
_MARGIN = dt.timedelta(hours=3)


@dataclass(frozen=True)
class Timing:
    cron: str | None
    timezone: str
    every: int | None
    anchor: dt.datetime  # `every` counts from here (start_at, else when the schedule was made)
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None


def check_cron(expression: str) -> str:
    """The expression normalised to single spaces; ValueError says what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    normal = " ".join(fields)
    if not croniter.is_valid(normal):
        raise ValueError(f"{normal!r} is not a valid cron expression")
    try:
        croniter(normal, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ValueError(f"{normal!r} never matches a date") from None
    return normal


def zone(name: str) -> ZoneInfo:
    """The IANA zone; ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from None


def slots_from(
    timing: Timing, start: dt.datetime, *, inclusive: bool = True
) -> Iterator[dt.datetime]:
    """Slots at or after `start` (after, when not inclusive), ascending, within the bounds."""
    lower = start if timing.start_at is None else max(start, timing.start_at)
    strict = not inclusive and lower == start
    for slot in _ascending(timing, lower):
        if strict and slot == start:
            continue
        if timing.end_at is not None and slot > timing.end_at:
            return
        yield slot


def slots_before(timing: Timing, before: dt.datetime) -> Iterator[dt.datetime]:
    """Slots strictly before `before`, descending, within the bounds."""
    upper = before
    if timing.end_at is not None and timing.end_at < before:
        upper = timing.end_at + dt.timedelta(microseconds=1)
    for slot in _descending(timing, upper):
        if timing.start_at is not None and slot < timing.start_at:
            return
        yield slot


def next_slot(timing: Timing, start: dt.datetime, *, inclusive: bool = True) -> dt.datetime | None:
    return next(slots_from(timing, start, inclusive=inclusive), None)


def upcoming(timing: Timing, now: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` slots after `now`."""
    return list(islice(slots_from(timing, now, inclusive=False), count))


def _ascending(timing: Timing, lower: dt.datetime) -> Iterator[dt.datetime]:
    if timing.every is not None:
        step = dt.timedelta(seconds=timing.every)
        k = max(0, -(-(lower - timing.anchor) // step))  # ceil
        while True:
            yield timing.anchor + k * step
            k += 1
    assert timing.cron is not None
    tz = zone(timing.timezone)
    walk = croniter(timing.cron, _wall(lower, tz) - _MARGIN)
    last: dt.datetime | None = None
    while True:
        try:
            wall = walk.get_next(dt.datetime)
        except CroniterBadDateError:  # no further date matches (e.g. a past year range)
            return
        slot = _instant(wall, tz)
        if slot >= lower and slot != last:
            last = slot
            yield slot


def _descending(timing: Timing, upper: dt.datetime) -> Iterator[dt.datetime]:
    if timing.every is not None:
        step = dt.timedelta(seconds=timing.every)
        k = -(-(upper - timing.anchor) // step) - 1  # the last k with anchor + k*step < upper
        while k >= 0:
            yield timing.anchor + k * step
            k -= 1
        return
    assert timing.cron is not None
    tz = zone(timing.timezone)
    walk = croniter(timing.cron, _wall(upper, tz) + _MARGIN)
    last: dt.datetime | None = None
    while True:
        try:
            wall = walk.get_prev(dt.datetime)
        except CroniterBadDateError:
            return
        slot = _instant(wall, tz)
        if slot < upper and slot != last:
            last = slot
            yield slot


def _wall(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _instant(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of a wall-clock time: its first occurrence, or the DST jump over it."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        return first
    # Skipped by a jump forward: the earliest instant whose wall time is at or after it.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the jump
    high = first  # after it
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)

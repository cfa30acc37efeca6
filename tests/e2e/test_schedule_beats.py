"""Schedules fired by real `celery beat` processes through a real worker subprocess.

Two beats tick `agent33.maintenance.fire_schedules` at once and one is SIGKILLed and restarted
mid-way: every slot must still fire exactly once, with no gap. Then `overlap: skip` with a slow
workflow, and `catchup: once` after every beat was down for 10 s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

import celeryconfig
from agent33.automation.schedule_spec import ScheduleSpecSchema
from agent33.automation.schedule_store import create_schedule, get_schedule, set_paused
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ScheduleFire
from tests.integration.automation.helpers import QUICK, runs_of
from tests.integration.engine.helpers import save

pytestmark = [
    pytest.mark.automation,
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("committed_db"),
]
GRACE = 3  # AGENT33_SCHEDULE_MISFIRE_GRACE for the worker: 10 s of downtime is "missed"
QUEUES = "steps,llm,llm.gpu,io,maintenance"


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    worker: subprocess.Popen[bytes] | None = None
    beats: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "tasks", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_worker(self) -> None:
        self.worker = self._spawn(
            "worker",
            ["worker", "-Q", QUEUES, "-c", "3", "-n", f"sched-{uuid.uuid4().hex[:6]}@%h",
             "--loglevel", "WARNING"],
        )  # fmt: skip

    def start_beat(self, name: str) -> None:
        schedule_file = self.logs / f"{name}-schedule"
        self.beats[name] = self._spawn(
            name, ["beat", "-s", str(schedule_file), "--loglevel", "INFO"]
        )

    def kill_beat(self, name: str) -> None:
        process = self.beats.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def sends(self, name: str) -> int:
        """How many fire_schedules ticks this beat's log says it sent."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return text.count("Sending due task agent33.maintenance.fire_schedules")

    def stop(self) -> None:
        for process in [*self.beats.values(), *([self.worker] if self.worker else [])]:
            process.send_signal(signal.SIGTERM)
        for process in [*self.beats.values(), *([self.worker] if self.worker else [])]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.beats.clear()


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A worker on the test database and Redis, under a key prefix of its own so no other
    worker of this test session takes its messages; beats are started by each test."""
    assert settings.database_url and settings.redis_url
    transport = dict(celeryconfig.build_config(settings)["broker_transport_options"])
    transport["global_keyprefix"] = f"agent33-sched-{uuid.uuid4().hex[:8]}:"
    logs = tmp_path_factory.mktemp("schedule-beats")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        AGENT33_VAR_DIR=str(logs / "var"),
        AGENT33_SCHEDULE_TICK="1",
        AGENT33_SCHEDULE_MISFIRE_GRACE=str(GRACE),
        AGENT33_CELERY_EXTRA=json.dumps({"broker_transport_options": transport}),
    )
    running = Cluster(env=env, logs=logs)
    running.start_worker()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cluster(worker: Cluster) -> Iterator[Cluster]:
    """The worker, and no beat left running after the test (before its tables are emptied)."""
    yield worker
    for name in list(worker.beats):
        worker.kill_beat(name)
        (worker.logs / f"{name}.log").unlink()
        for leftover in worker.logs.glob(f"{name}-schedule*"):
            leftover.unlink()


def add_schedule(name: str, workflow: str, **fields: object) -> uuid.UUID:
    spec = ScheduleSpecSchema().load({"name": name, "workflow": workflow, "every": 1, **fields})
    with session_scope() as session:
        return create_schedule(session=session, spec=spec).id


def pause(name: str) -> None:
    with session_scope() as session:
        set_paused(session=session, schedule=get_schedule(session=session, name=name), paused=True)


def fire_rows(schedule_id: uuid.UUID) -> list[ScheduleFire]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ScheduleFire)
                .where(ScheduleFire.schedule_id == schedule_id)
                .order_by(ScheduleFire.fire_time)
            )
        )


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def slot_seconds(slots: list[str]) -> list[int]:
    return [int(dt.datetime.fromisoformat(s).timestamp()) for s in slots]


def test_two_beats_and_a_restarted_one_fire_every_slot_exactly_once(cluster: Cluster) -> None:
    save(QUICK)
    cluster.start_beat("beat-a")
    cluster.start_beat("beat-b")
    wait_until(lambda: cluster.sends("beat-a") and cluster.sends("beat-b"), 30)
    schedule_id = add_schedule("each-second", "quick", overlap="allow", catchup="all")
    time.sleep(15)
    cluster.kill_beat("beat-a")  # SIGKILL mid-way: no clean shutdown
    cluster.start_beat("beat-a")
    time.sleep(15)
    before_pause = cluster.sends("beat-a"), cluster.sends("beat-b")
    pause("each-second")
    time.sleep(2)
    runs = runs_of("each-second")
    per_slot = Counter(r.trigger["slot"] for r in runs)
    seconds = slot_seconds(sorted(per_slot))
    assert len(seconds) >= 27, f"only {len(seconds)} slots fired in 30 s"
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a slot was skipped"
    assert set(per_slot.values()) == {1}, "a slot fired twice"
    rows = fire_rows(schedule_id)
    assert [r.status for r in rows] == ["fired"] * len(rows) and len(rows) == len(seconds)
    assert min(before_pause) >= 24, f"ticks sent by each beat: {before_pause}"
    print(f"{len(seconds)} slots, one run each; ticks sent by the two beats: {before_pause}")
    wait_until(lambda: all(r.state == "succeeded" for r in runs_of("each-second")), 20)


def test_overlap_skip_with_a_slow_workflow_skips_slots(cluster: Cluster) -> None:
    save(
        {
            "name": "slow",
            "steps": [{"id": "nap", "action": "run_command", "with": {"argv": ["sleep", "3"]}}],
        }
    )
    cluster.start_beat("beat-a")
    wait_until(lambda: cluster.sends("beat-a"), 30)
    schedule_id = add_schedule("slow-each-second", "slow", overlap="skip")
    time.sleep(9)
    pause("slow-each-second")
    wait_until(
        lambda: all(r.state in ("succeeded", "failed") for r in runs_of("slow-each-second")), 20
    )
    runs = runs_of("slow-each-second")
    rows = fire_rows(schedule_id)
    skipped = [r for r in rows if r.status == "skipped"]
    assert 2 <= len(runs) <= 4 and len(skipped) >= 4, [(r.fire_time, r.status) for r in rows]
    assert all(r.state == "succeeded" for r in runs)
    assert all("overlap" in (r.reason or "") for r in skipped)
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.finished_at is not None and earlier.finished_at <= later.created_at


def test_catchup_once_after_ten_seconds_without_beat_fires_once(cluster: Cluster) -> None:
    save(QUICK)
    cluster.start_beat("beat-a")
    wait_until(lambda: cluster.sends("beat-a"), 30)
    schedule_id = add_schedule("catch-once", "quick", overlap="allow", catchup="once")
    time.sleep(2)
    cluster.kill_beat("beat-a")
    time.sleep(10)
    cluster.start_beat("beat-a")
    wait_until(lambda: any(r.catchup for r in fire_rows(schedule_id)), 30)
    time.sleep(2)
    pause("catch-once")
    rows = fire_rows(schedule_id)
    (caught,) = [r for r in rows if r.catchup]
    fired_before = [r.fire_time for r in rows if r.fire_time < caught.fire_time]
    first_after = min(r.fire_time for r in rows if r.fire_time > caught.fire_time)
    # Between the last slot fired before the outage and the first on-time slot after it, only
    # the one catch-up slot ran (the rest of the 10 s were missed and dropped, by policy).
    gap = (first_after - max(fired_before)).total_seconds()
    assert gap >= 8, f"the outage left a gap of only {gap} s"
    assert (
        first_after - caught.fire_time == dt.timedelta(seconds=1)
        or (caught.created_at - caught.fire_time).total_seconds() > GRACE
    )
    runs = runs_of("catch-once")
    in_gap = [
        r
        for r in runs
        if max(fired_before) < dt.datetime.fromisoformat(r.trigger["slot"]) < first_after
    ]
    assert len(in_gap) == 1 and in_gap[0].trigger.get("catchup") is True
    assert Counter(r.trigger["slot"] for r in runs).most_common(1)[0][1] == 1

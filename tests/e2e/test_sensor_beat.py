"""Real processes: two `celery beat`s tick `agent33.maintenance.poll_sensors` every 0.5 s and a
real worker runs it; a file dropped in the watched directory starts exactly one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from agent33.automation.sensors import create_sensor
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Sensor
from tests.integration.automation.helpers import ON_FILE, runs_by
from tests.integration.engine.helpers import save, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.automation,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("committed_db"),
]
TICK = "0.5"


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


@pytest.fixture
def spawn(
    settings: Settings, watched: Path, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `celery -A tasks ...` on the test database and Redis, under a key prefix of its
    own (no other session's worker takes these messages); all are stopped at the end."""
    assert settings.database_url and settings.redis_url
    prefix = f"agent33-sensor-beat-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        AGENT33_SENSOR_TICK=TICK,
        AGENT33_FILE_ROOTS=str(watched),
        AGENT33_CELERY_EXTRA=json.dumps(
            {"broker_transport_options": {"visibility_timeout": 3600, "global_keyprefix": prefix}}
        ),
    )
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{args[0]}-{len(started)}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "tasks", *args, "--loglevel", "INFO"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _checks() -> int:
    with session_scope() as session:
        return session.scalar(select(Sensor.checks).where(Sensor.name == "inbox")) or 0


def _wait(condition: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def test_two_beats_start_exactly_one_run_for_a_dropped_file(
    settings: Settings, watched: Path, spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    save(ON_FILE)
    spec = {
        "name": "inbox",
        "kind": "file_change",
        "workflow": "on_file",
        "directory": str(watched / "inbox"),
        "glob": "*.txt",
        "debounce": 0.5,
        "interval": 0.0,
        "enabled": True,
        "inputs": {"path": "{{ event.path }}", "change": "{{ event.type }}"},
    }
    with session_scope() as session:
        create_sensor(session=session, settings=settings.replace(file_roots=(watched,)), spec=spec)
    spawn("worker", "-Q", "maintenance,steps", "--pool", "threads", "-c", "4", "-n", "sb@%h")
    for name in ("one", "two"):
        spawn("beat", "-s", str(tmp_path / f"beat-{name}"))
    _wait(lambda: _checks() >= 2, "the beats' ticks checking the sensor")

    dropped = watched / "inbox" / "order-17.txt"
    dropped.write_text("2 x widgets")
    _wait(lambda: len(runs_by("inbox")) == 1, "a run for the dropped file")
    [run] = runs_by("inbox")
    assert wait_for(run.id, timeout=30).state == "succeeded"
    assert run.inputs == {"path": str(dropped), "change": "created"}

    seen = _checks()
    _wait(lambda: _checks() >= seen + 8, "eight more checks")
    assert len(runs_by("inbox")) == 1

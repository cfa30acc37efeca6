"""F8-F11: Redis restarted, crashed empty, flapping and hung under runs in flight.

Real worker processes on a private Redis (append-only file on); the ledger counts what each
step did. Every run must succeed, none recorded twice, and the duplicates are printed.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from tests.fault.harness import bench, save_chain, with_sigcont
from web import outbox as web_outbox

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240), pytest.mark.usefixtures("committed_db")]
RUNS = 10
STEPS = 5


def _mid_run(made: object, name: str) -> None:
    """Wait until the runs are in flight: some steps done, most still to go."""
    ledger = made.ledger  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while sum(ledger.counts().values()) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(ledger.counts().values()) >= 8, f"{name}: the runs never started"


def test_f8_clean_redis_restart_mid_run(settings: Settings, tmp_path: Path) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f8_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f8_chain", RUNS)
        _mid_run(made, "F8")
        made.stop_redis(signal.SIGTERM)
        time.sleep(3)
        made.restart_redis()
        made.check("F8 Redis restart", steps=STEPS)


def test_f9_redis_crash_that_loses_every_message(settings: Settings, tmp_path: Path) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f9_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f9_chain", RUNS)
        _mid_run(made, "F9")
        made.stop_redis(signal.SIGKILL)
        made.restart_redis(wipe=True)  # queued and unacked messages are gone
        made.check("F9 Redis crash, data lost", steps=STEPS)


def test_f10_redis_hung_then_resumed(
    settings: Settings,
    tmp_path: Path,
    client: FlaskClient,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped (not refusing) Redis: run creation through the API still answers 202 within
    the publish timeout, and everything runs once Redis continues."""
    with bench(settings, tmp_path) as made:
        monkeypatch.setattr(web_outbox, "flush_outbox", made.publish)  # the API on this Redis
        save_chain("f10_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f10_chain", RUNS)
        _mid_run(made, "F10")
        made.stop_redis(signal.SIGSTOP)
        try:
            slowest = 0.0
            for _ in range(3):
                started = time.monotonic()
                created = client.post(
                    "/api/v1/workflows/f10_chain/runs", json={"inputs": {}}, headers=admin_headers
                )
                slowest = max(slowest, time.monotonic() - started)
                assert created.status_code == 202, created.get_json()
                made.run_ids.append(uuid.UUID(created.get_json()["id"]))
            limit = settings.publish_timeout + 1.5
            assert slowest < limit, f"run creation took {slowest:.1f}s with Redis hung"
            print(f"F10: slowest run creation with Redis hung: {slowest * 1000:.0f} ms")
            time.sleep(5)
        finally:
            with_sigcont(made.redis.pid)
        made.check("F10 Redis hung", steps=STEPS)


def test_f11_redis_flapping(settings: Settings, tmp_path: Path) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f11_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f11_chain", RUNS)
        _mid_run(made, "F11")
        for _ in range(3):
            made.stop_redis(signal.SIGTERM)
            time.sleep(0.5)
            made.restart_redis()
            time.sleep(2)
        made.check("F11 Redis flapping x3", steps=STEPS)

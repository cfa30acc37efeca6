"""F5, F6: the Redis visibility timeout against a long step and against retry delays.

Redis redelivers a message that stayed unacked longer than the visibility timeout, to any
consumer, while the first copy may still be running. The workers here use the least timeout
allowed (10 s) and sweep for such messages every second (kombu's default sweep is ~100 s,
which would hide the fault), so a redelivery happens within the test whenever one is possible.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import service
from tests.fault.harness import Bench, bench
from tests.integration.engine.helpers import events_of, save, steps_of

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180), pytest.mark.usefixtures("committed_db")]
VISIBILITY = 10  # seconds: the least AGENT33_VISIBILITY_TIMEOUT accepts


def _eager_sweep(settings: Settings) -> dict[str, str]:
    """Worker environment: visibility timeout VISIBILITY, unacked messages swept every second."""
    transport = dict(celeryconfig.build_config(settings)["broker_transport_options"])
    transport.update(
        visibility_timeout=VISIBILITY, unacked_restore_interval=1, unacked_restore_throttle=1
    )
    return {
        "AGENT33_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "AGENT33_CELERY_EXTRA": json.dumps({"broker_transport_options": transport}),
    }


def _one_step(name: str, made: Bench, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "s0",
                "action": "http_request",
                "with": {
                    "url": f"{made.ledger.url}/effect/{{{{ run.id }}}}/s0?{query}",
                    "method": "POST",
                    "json": {},
                },
                **extra,
            }
        ],
    }


def test_f5_step_longer_than_the_visibility_timeout(settings: Settings, tmp_path: Path) -> None:
    """A 16 s step under a 10 s visibility timeout: Redis hands the message out again while it
    runs, to the worker's free process; the step's live lease turns the copy away."""
    with bench(settings, tmp_path) as made:
        save(_one_step("f5_long", made, "ms=16000"))
        made.start_worker(concurrency=2, **_eager_sweep(made.settings))
        (run_id,) = made.start_runs("f5_long", 1)
        made.check("F5 step longer than the visibility timeout", steps=1)
        assert made.ledger.counts()[(str(run_id), "s0")] == 1, "the long step ran twice"
        with session_scope() as session:
            step = steps_of(service.get_run(session=session, run_id=run_id))["s0"]
        assert step.attempt == 1, f"the step was claimed {step.attempt} times"
        log = (made.redis_dir.parent / "worker-0.log").read_text(errors="replace")
        assert log.count("] received") >= 2, "Redis never redelivered: the fault did not happen"
        assert "duplicate:running" in log, "the redelivered copy was not turned away"
        print(f"F5: redelivered {log.count('] received') - 1} time(s) while running, turned away")


def test_f6_retry_delays_stay_below_the_visibility_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    """Backoff 10 s (up to 12 s with jitter) would wait past the visibility timeout: a delayed
    message waits unacked in the worker, so Redis would hand it out again. The delay is capped
    below the timeout: three calls, three attempts, each delay under the timeout."""
    with bench(settings, tmp_path) as made:
        retries = {"max": 3, "backoff": 10, "max_delay": 300}
        save(_one_step("f6_retry", made, "fail=2", retries=retries))
        made.start_worker(concurrency=2, **_eager_sweep(made.settings))
        (run_id,) = made.start_runs("f6_retry", 1)
        started = time.monotonic()
        made.check("F6 retry delays under the visibility timeout", steps=1)
        took = time.monotonic() - started
        assert made.ledger.counts()[(str(run_id), "s0")] == 3, "a retry ran twice, or never"
        with session_scope() as session:
            step = steps_of(service.get_run(session=session, run_id=run_id))["s0"]
        assert step.attempt == 3
        delays = [e.data["delay"] for e in events_of(run_id) if e.to_state == "retrying"]
        assert len(delays) == 2, delays
        assert all(delay < VISIBILITY for delay in delays), delays
        assert delays[1] <= VISIBILITY / 2 * 1.2, f"the second delay was not capped: {delays}"
        print(f"F6: retry delays {[round(d, 1) for d in delays]} s, run done in {took:.1f} s")

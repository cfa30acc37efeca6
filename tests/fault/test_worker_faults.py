"""F2, F3, F7, F16, F17, F24, F25: workers killed whole, with prefetched messages, by a poison
step and mid fan-in; a failing fan-in branch; runs created while Redis is down; a cancel
followed by a worker restart. Real worker processes, a private Redis, the ledger counting."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import lifecycle, service
from tests.fault.harness import Bench, bench, save_chain
from tests.integration.engine.helpers import save, steps_of
from web import outbox as web_outbox

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240), pytest.mark.usefixtures("committed_db")]


def _running_pid(run_id: uuid.UUID, step_id: str, timeout: float = 60) -> int:
    """The pid of the pool process running `step_id` (from the step's recorded worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            step = steps_of(service.get_run(session=session, run_id=run_id)).get(step_id)
            if step is not None and step.state == "running" and step.worker:
                return int(step.worker.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"{step_id} of {run_id} never started")


def _family(process: subprocess.Popen[bytes]) -> set[int]:
    try:
        main = psutil.Process(process.pid)
        return {main.pid, *(child.pid for child in main.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _ledger_step(made: Bench, step_id: str, ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "action": "http_request",
        "with": {
            "url": f"{made.ledger.url}/effect/{{{{ run.id }}}}/{step_id}?ms={ms}",
            "method": "POST",
            "json": {},
            **extra,
        },
    }


def test_f2_whole_worker_killed_mid_step(settings: Settings, tmp_path: Path) -> None:
    """The message stays unacked in Redis (its visibility timeout is an hour): the reaper sees
    the dead worker's lease expire and redelivers to the other worker."""
    with bench(settings, tmp_path) as made:
        save_chain("f2_chain", made.ledger, steps=3, ms=1500)
        first = made.start_worker("w1")
        (run_id,) = made.start_runs("f2_chain", 1)
        assert _running_pid(run_id, "s0") in _family(first)
        made.start_worker("w2")
        made.kill_worker(first)
        made.check("F2 whole worker SIGKILLed", steps=3)


def test_f3_worker_killed_holding_prefetched_messages(settings: Settings, tmp_path: Path) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f3_one", made.ledger, steps=1, ms=300)
        first = made.start_worker("w1", concurrency=2)
        made.start_runs("f3_one", 20)
        deadline = time.monotonic() + 60
        while sum(made.ledger.counts().values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        made.kill_worker(first)  # running and reserved messages die with it
        made.start_worker("w2", concurrency=2)
        made.check("F3 worker with prefetched messages SIGKILLed", steps=1)


def test_f7_poison_step_is_failed_after_its_delivery_budget(
    settings: Settings, tmp_path: Path
) -> None:
    """A step whose process dies every time it runs is failed once its deliveries are spent,
    never requeued forever."""
    with bench(settings, tmp_path) as made:
        save_chain("f7_poison", made.ledger, steps=1, ms=3000)
        worker = made.start_worker("w1")
        (run_id,) = made.start_runs("f7_poison", 1)
        killed: set[int] = set()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            with session_scope() as session:
                run = service.get_run(session=session, run_id=run_id)
                step = steps_of(run)["s0"]
                if run.state in ("failed", "succeeded"):
                    break
                pid = int(step.worker.rsplit(":", 1)[1]) if step.worker else None
            alive = pid is not None and pid not in killed and pid in _family(worker)
            if step.state == "running" and alive and pid != worker.pid:
                psutil.Process(pid).kill()  # the step "kills its own process"
                killed.add(pid)
            time.sleep(0.05)
        made.check("F7 poison step", expect="failed")
        with session_scope() as session:
            step = steps_of(service.get_run(session=session, run_id=run_id))["s0"]
        assert step.error["type"] == "WorkerLost", step.error
        assert step.deliveries <= settings.max_deliveries
        assert len(killed) == step.deliveries, (killed, step.deliveries)


def test_f16_a_failing_fan_in_branch_fails_the_run_and_the_join_never_runs(
    settings: Settings, tmp_path: Path
) -> None:
    with bench(settings, tmp_path) as made:
        join = _ledger_step(made, "join", 0)
        join["depends_on"] = ["a", "b", "c"]
        save(
            {
                "name": "f16_fan_in",
                "inputs": {"type": "object"},
                "steps": [
                    _ledger_step(made, "a", 200),
                    _ledger_step(made, "b", 100, expect_status=[299]),  # fails, not retryable
                    _ledger_step(made, "c", 200),
                    join,
                ],
            }
        )
        made.start_worker(concurrency=2)
        started = time.monotonic()
        (run_id,) = made.start_runs("f16_fan_in", 1)
        made.check("F16 fan-in branch raises", expect="failed")
        assert time.monotonic() - started < 30
        with session_scope() as session:
            run = service.get_run(session=session, run_id=run_id)
        assert "b" in str(run.error), run.error
        assert made.ledger.counts()[(str(run_id), "join")] == 0, "the join ran"


def test_f17_fan_in_branch_worker_killed_the_join_runs_once(
    settings: Settings, tmp_path: Path
) -> None:
    with bench(settings, tmp_path) as made:
        join = _ledger_step(made, "join", 0)
        join["depends_on"] = ["a", "b", "c"]
        save(
            {
                "name": "f17_fan_in",
                "inputs": {"type": "object"},
                "steps": [
                    _ledger_step(made, "a", 100),
                    _ledger_step(made, "b", 2000),
                    _ledger_step(made, "c", 100),
                    join,
                ],
            }
        )
        worker = made.start_worker(concurrency=2)
        (run_id,) = made.start_runs("f17_fan_in", 1)
        pid = _running_pid(run_id, "b")
        assert pid in _family(worker)
        psutil.Process(pid).kill()
        made.check("F17 fan-in branch's worker SIGKILLed", steps=4)
        assert made.ledger.counts()[(str(run_id), "join")] == 1
        with session_scope() as session:
            steps = steps_of(service.get_run(session=session, run_id=run_id))
        assert steps["b"].attempt == 2 and steps["join"].attempt == 1


def test_f24_runs_created_while_redis_is_down_all_run_after_it_returns(
    settings: Settings,
    tmp_path: Path,
    client: FlaskClient,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with bench(settings, tmp_path) as made:
        monkeypatch.setattr(web_outbox, "flush_outbox", made.publish)
        save_chain("f24_chain", made.ledger, steps=2, ms=50)
        made.start_worker(concurrency=2)
        made.stop_redis(signal.SIGTERM)
        for _ in range(10):
            created = client.post(
                "/api/v1/workflows/f24_chain/runs", json={"inputs": {}}, headers=admin_headers
            )
            assert created.status_code == 202, created.get_json()
            made.run_ids.append(uuid.UUID(created.get_json()["id"]))
        time.sleep(1)
        made.restart_redis()  # the relay publishes the stored runs' first steps
        made.check("F24 runs created with Redis down", steps=2)


def test_f25_nothing_of_a_cancelled_run_runs_after_a_worker_restart(
    settings: Settings, tmp_path: Path
) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f25_chain", made.ledger, steps=4, ms=1500)
        worker = made.start_worker(concurrency=2)
        (run_id,) = made.start_runs("f25_chain", 1)
        _running_pid(run_id, "s0")
        with session_scope() as session:
            lifecycle.cancel_run(session=session, run_id=run_id, by="fault-test")
        cancelled_calls = made.ledger.counts()[(str(run_id), "s0")]
        made.kill_worker(worker)  # revokes live in worker memory: a restart forgets them
        made.start_worker(concurrency=2)
        made.check("F25 cancel, then workers restarted", expect="cancelled")
        time.sleep(3)  # anything still queued would have run by now
        after = {step: n for (run, step), n in made.ledger.counts().items() if run == str(run_id)}
        assert after.get("s0", 0) <= max(cancelled_calls, 1)
        assert not any(after.get(f"s{i}") for i in (1, 2, 3)), after

"""A prefork worker's main process serves the sum of its pool children's metrics
(AGENT33_WORKER_METRICS_PORT over PROMETHEUS_MULTIPROC_DIR), and its logs, Celery's own lines
included, are JSON objects carrying run_id, step_id and task_id (AGENT33_LOG_FORMAT=json).

Two `sleep` steps ready at once run in the two pool children; the exporter must count both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from celery import Celery

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import free_port
from agent33.engine import planner, service
from agent33.engine.outbox import publish_pending
from tests.integration.engine.helpers import save, steps_of, wait_for
from tests.integration.observability.support import eventually, parse, value

pytestmark = [
    pytest.mark.observability,
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.usefixtures("committed_db"),
]
WORKFLOW = {
    "name": "two_sleeps",
    "inputs": {"type": "object"},
    "steps": [
        {"id": "left", "action": "run_command", "with": {"argv": ["sleep", "1"]}},
        {"id": "right", "action": "run_command", "with": {"argv": ["sleep", "1"]}},
    ],
}


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path, path: Path):
        self.process, self.port, self.log, self.path = process, port, log, path

    def scrape(self) -> str:
        response = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def own_settings(settings: Settings) -> Settings:
    """The suite's database and Redis, with broker keys of this test's own."""
    transport = {
        **celeryconfig.build_config(settings)["broker_transport_options"],
        "global_keyprefix": f"obs-{uuid.uuid4().hex[:8]}:",
    }
    return settings.replace(extra={"broker_transport_options": transport})


@pytest.fixture(scope="module")
def worker(own_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the module (it holds no state of a test's: runs are told apart by id)."""
    assert own_settings.database_url and own_settings.redis_url
    tmp_path = tmp_path_factory.mktemp("worker")
    port = free_port()
    path = tmp_path / "metrics"
    path.mkdir()
    (path / "counter_1.db").write_bytes(b"stale")  # left by an earlier worker: wiped at start
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT33_", "OTEL_"))}
    env.update(
        DATABASE_URL=own_settings.database_url,
        REDIS_URL=own_settings.redis_url,
        AGENT33_CELERY_EXTRA=json.dumps(dict(own_settings.extra)),
        AGENT33_LOG_FORMAT="json",
        AGENT33_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(path),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - a fixed argv
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "steps"]
            + ["-c", "2", "--pool", "prefork", "-n", "obs@%h", "--loglevel", "DEBUG"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    started = Worker(process, port, log, path)
    try:
        eventually(lambda: _answers(started), timeout=30)
        yield started
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(worker: Worker) -> None:
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]
    try:
        worker.scrape()
    except requests.RequestException as exc:
        raise AssertionError(str(exc)) from None


def _run(settings: Settings) -> uuid.UUID:
    save(WORKFLOW)
    app = Celery("obs-publisher")
    app.config_from_object(celeryconfig.build_config(settings))
    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session, settings=settings, workflow_name=WORKFLOW["name"], inputs={}
        )
        run_id = run.id
    assert publish_pending(outbox_ids=outbox_ids, publisher=lambda p: planner.publish(p, app))
    return run_id


def test_the_exporter_sums_both_pool_children(own_settings: Settings, worker: Worker) -> None:
    assert not (worker.path / "counter_1.db").exists()
    runs = _runs_so_far(worker) + 1
    run = wait_for(_run(own_settings), timeout=30)
    assert run.state == "succeeded", run.error
    pids = {int(s.worker.rsplit(":", 1)[1]) for s in steps_of(run).values() if s.worker}
    children = {c.pid for c in psutil.Process(worker.process.pid).children()}
    assert len(pids) == 2 and pids <= children, "each step should run in its own pool child"

    def counted() -> None:
        samples = parse(worker.scrape())
        succeeded = {"action": "run_command", "state": "succeeded"}
        assert value(samples, "agent33_step_duration_seconds_count", **succeeded) == 2 * runs
        assert value(samples, "agent33_step_duration_seconds_sum", **succeeded) >= 2 * runs
        finished = {"workflow": "two_sleeps", "state": "succeeded"}
        assert value(samples, "agent33_runs_finished_total", **finished) == runs

    eventually(counted)
    written = {int(f.stem.rsplit("_", 1)[1]) for f in worker.path.glob("histogram_*.db")}
    assert pids <= written


def _runs_so_far(worker: Worker) -> int:
    finished = {"workflow": "two_sleeps", "state": "succeeded"}
    return int(value(parse(worker.scrape()), "agent33_runs_finished_total", **finished))


def test_worker_logs_are_json_with_run_step_and_task_ids(
    own_settings: Settings, worker: Worker
) -> None:
    run_id = _run(own_settings)
    assert wait_for(run_id, timeout=30).state == "succeeded"

    def logged() -> list[dict[str, Any]]:
        executed = [
            r for r in worker.records() if r.get("event") == "step.executed" and r.get("run_id")
        ]
        assert {r["step_id"] for r in executed if r["run_id"] == str(run_id)} == {"left", "right"}
        return executed

    executed = eventually(logged)
    assert all(r["task_id"] and r["level"] == "debug" and r["timestamp"] for r in executed)
    celery_lines = [r for r in worker.records() if r.get("logger") == "celery.app.trace"]
    ours = [r for r in celery_lines if r.get("run_id") == str(run_id)]
    assert len(ours) == 2, "Celery's own lines go through the same JSON configuration"
    assert {r["step_id"] for r in ours} == {"left", "right"}
    assert all(r["task_id"] in r["event"] and "succeeded" in r["event"] for r in ours)

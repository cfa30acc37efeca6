"""F1: SIGKILL the worker's child mid-step; the message is redelivered and the run succeeds once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from celery import Celery

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import planner
from agent33.engine.outbox import publish_pending
from tests.integration.engine.helpers import events_of, save, steps_of, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120), pytest.mark.usefixtures("committed_db")]
ALL_QUEUES = "steps,llm,llm.gpu,io,maintenance"


@pytest.fixture
def isolated_redis(settings: Settings) -> str:
    assert settings.redis_url
    return settings.redis_url.rsplit("/", 1)[0] + "/13"


@pytest.fixture
def worker(settings: Settings, isolated_redis: str) -> Iterator[subprocess.Popen[bytes]]:
    import redis

    redis.Redis.from_url(isolated_redis).flushdb()
    assert settings.database_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=isolated_redis)
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            ALL_QUEUES,
            "-c",
            "1",
            "--pool",
            "prefork",
            "-n",
            "fault@%h",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _publisher(settings: Settings, redis_url: str) -> Any:
    app = Celery("fault-publisher")
    app.config_from_object(celeryconfig.build_config(settings.replace(redis_url=redis_url)))
    return lambda payload: planner.publish(payload, app)


def _running_child(worker: subprocess.Popen[bytes], run_id: Any, step_id: str) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with session_scope() as session:
            from agent33.engine.service import get_run

            step = steps_of(get_run(session=session, run_id=run_id))[step_id]
            if step.state == "running" and step.worker:
                pid = int(step.worker.rsplit(":", 1)[1])
                children = {c.pid for c in psutil.Process(worker.pid).children()}
                assert pid in children, "the step should run in a pool child"
                return psutil.Process(pid)
        time.sleep(0.05)
    raise AssertionError("the step never started")


def test_sigkilled_child_mid_step_is_redelivered_and_the_run_succeeds(
    settings: Settings, isolated_redis: str, worker: subprocess.Popen[bytes]
) -> None:
    doc = {
        "name": "killable",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "before", "action": "transform", "with": {"v": 1}},
            {
                "id": "slow",
                "action": "run_command",
                "depends_on": ["before"],
                "with": {"argv": ["sleep", "2"]},
            },
            {"id": "after", "action": "transform", "depends_on": ["slow"], "with": {"v": 3}},
        ],
    }
    save(doc)
    from agent33.engine import service

    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session, settings=settings, workflow_name="killable", inputs={}
        )
        run_id = run.id
    publish_pending(outbox_ids=outbox_ids, publisher=_publisher(settings, isolated_redis))
    child = _running_child(worker, run_id, "slow")
    child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    finished = wait_for(run_id, timeout=60)
    assert finished.state == "succeeded", finished.error
    steps = steps_of(finished)
    assert steps["slow"].attempt == 2 and steps["slow"].deliveries == 2
    succeeded = [e.step_id for e in events_of(run_id) if e.to_state == "succeeded" and e.step_id]
    assert sorted(succeeded) == ["after", "before", "slow"], (
        "a step was recorded twice as succeeded"
    )
    assert time.monotonic() - killed_at < 30

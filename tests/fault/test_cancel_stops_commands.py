"""A cancelled or timed-out `run_command` step stops its whole process group, grandchildren too.

The command is `sh -c "sleep N & wait"`: the sandbox's death signal reaches only `sh`, so the
`sleep` survives unless the group is stopped. Run in the plain sandbox (bubblewrap's PID
namespace would kill the grandchild on its own and hide a missing group kill).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from celery import Celery

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import planner, service
from agent33.engine.lifecycle import cancel_run
from agent33.engine.outbox import publish_pending
from agent33.security import processes, sandbox
from tasks.app import settings_swapped
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import save, start, steps_of, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

# The watcher asks the database once a second, then SIGTERM; SIGKILL follows after STOP_GRACE.
WITHIN = processes.WATCH_INTERVAL + processes.STOP_GRACE + 1.0


ALLOW = ("sh", "sleep")


@pytest.fixture(autouse=True)
def plain_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_works", lambda identity: False)


@pytest.fixture
def shell_allowed(settings: Settings) -> Iterator[Settings]:
    """The in-process worker may start `sh` (not in the default allowlist)."""
    with settings_swapped(settings.replace(command_allowlist=ALLOW)) as own:
        yield own


def _marker() -> str:
    return f"40.{uuid.uuid4().int % 10**6}"


def _flow(marker: str, **step: Any) -> dict[str, Any]:
    return {
        "name": f"stoppable_{marker.replace('.', '_')}",
        "steps": [
            {
                "id": "nap",
                "action": "run_command",
                "with": {"argv": ["sh", "-c", f"sleep {marker} & wait"]},
                **step,
            }
        ],
    }


def _family(marker: str) -> list[psutil.Process]:
    """The `sh` and its `sleep`, alive (zombies do not count)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            argv = proc.info["cmdline"] or []
            ours = bool(argv) and marker in argv[-1].split()
            if ours and os.path.basename(argv[0]) in ("sleep", "sh"):
                if proc.status() != "zombie":
                    found.append(proc)
    return found


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(what)


def _assert_gone(marker: str, timeout: float) -> float:
    try:
        return _wait(lambda: not _family(marker), timeout, f"sleep {marker} outlived its step")
    finally:
        for proc in _family(marker):
            proc.kill()


def _started(marker: str) -> None:
    _wait(lambda: len(_family(marker)) == 2, 30, "the command never started")


@pytest.mark.usefixtures("committed_db", "celery_worker", "shell_allowed")
def test_cancel_stops_the_command_and_its_grandchild() -> None:
    marker = _marker()
    run_id = start(_flow(marker))
    _started(marker)
    with session_scope() as session:
        result = cancel_run(session=session, run_id=run_id, by="ops")
    flush_outbox(result.outbox_ids)
    _assert_gone(marker, WITHIN)
    assert wait_for(run_id).state == "cancelled"


@pytest.mark.usefixtures("committed_db", "celery_worker", "shell_allowed")
def test_a_step_timeout_stops_the_command_and_its_grandchild() -> None:
    marker = _marker()
    run_id = start(_flow(marker, timeout=1))
    _started(marker)
    _assert_gone(marker, 1 + processes.STOP_GRACE + 1.0)
    run = wait_for(run_id)
    assert run.state == "failed"
    assert "timed out" in str(steps_of(run)["nap"].error)


def test_stop_group_kills_what_ignores_sigterm() -> None:
    """SIGTERM first; whatever traps it is SIGKILLed after the grace period."""
    marker = _marker()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        ["sh", "-c", f"trap '' TERM; sleep {marker} & wait"], start_new_session=True
    )
    _started(marker)
    started = time.monotonic()
    processes.stop_group(proc, grace=0.5)  # type: ignore[arg-type]
    _assert_gone(marker, 2)
    assert time.monotonic() - started < 2


WORKER = """
import sys
from agent33.security import sandbox
sandbox.bwrap_works = lambda identity: False
from celery.__main__ import main
sys.argv = ["celery", *sys.argv[1:]]
main()
"""


@pytest.fixture
def prefork_worker(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real prefork worker (`revoke(terminate=True)` SIGTERMs its pool child) on its own
    Redis database."""
    import redis

    assert settings.redis_url and settings.database_url
    redis_url = settings.redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=redis_url,
        AGENT33_COMMAND_ALLOWLIST=",".join(ALLOW),
    )
    argv = ["-A", "tasks", "worker", "-Q", "steps,io", "-c", "1", "--pool", "prefork"]
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", WORKER, *argv, "-n", "cancel@%h", "--loglevel", "WARNING"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, redis_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.e2e
@pytest.mark.usefixtures("committed_db")
def test_cancel_on_a_prefork_worker_stops_the_group_before_the_child_dies(
    settings: Settings, prefork_worker: tuple[subprocess.Popen[bytes], str]
) -> None:
    worker, redis_url = prefork_worker
    marker = _marker()
    # With a step timeout the action runs in a helper thread of the pool child: billiard turns
    # SIGTERM into an exception in the main thread only, so the command would outlive it.
    doc = _flow(marker, timeout=30)
    save(doc)
    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session, settings=settings, workflow_name=doc["name"], inputs={}
        )
        run_id = run.id
    app = Celery("cancel-publisher")
    app.config_from_object(celeryconfig.build_config(settings.replace(redis_url=redis_url)))
    publish_pending(outbox_ids=outbox_ids, publisher=lambda p: planner.publish(p, app))
    _started(marker)
    children = psutil.Process(worker.pid).children()
    with session_scope() as session:
        result = cancel_run(session=session, run_id=run_id, by="ops")
    app.control.revoke(result.revoke_task_ids, terminate=True, signal="SIGTERM")
    took = _assert_gone(marker, processes.STOP_GRACE + 2.0)
    assert took < processes.STOP_GRACE + 2.0
    _wait(lambda: not any(c.is_running() for c in children), 10, "the pool child lived on")
    assert wait_for(run_id).state == "cancelled"

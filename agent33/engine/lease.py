"""Leases that follow the work: one delivery budget, a heartbeat, and who holds a step.

A running step's lease is renewed by its worker while the action runs, so the reaper takes back
only a step whose worker stopped renewing (dead, or cut off from the database): a step is never
executing twice at once because it outlived a fixed lease.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import psutil
import structlog
from sqlalchemy import func, update
from sqlalchemy.orm import object_session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import StepRun
from agent33.definitions.models import StepDef
from agent33.engine import store
from agent33.engine.states import StepState

log = structlog.get_logger(__name__)

Liveness = Literal["alive", "dead", "unknown"]
_executing: set[uuid.UUID] = set()  # steps whose action runs in this process right now
_executing_lock = threading.Lock()


def delivery_budget(settings: Settings, definition: StepDef) -> int:
    """How many deliveries (claims, or republishes of a lost message) a step gets in all."""
    return settings.max_deliveries + definition.retries.max


def deliveries_exhausted(count: int, settings: Settings, definition: StepDef) -> bool:
    """Whether `count` deliveries already made leave none for another one (runner and reaper)."""
    return count >= delivery_budget(settings, definition)


def worker_id() -> str:
    """host:pid of this process, computed per call (prefork children differ from the parent)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def liveness(worker: str | None, step_run_id: uuid.UUID) -> Liveness:
    """Whether the worker recorded on a running step still runs it: known for this process
    (its own registry) and for processes of this host; another host's is unknown."""
    if not worker or ":" not in worker:
        return "dead"
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return "unknown"
    if not pid.isdigit():
        return "dead"
    if int(pid) == os.getpid():
        with _executing_lock:
            return "alive" if step_run_id in _executing else "dead"
    return "alive" if psutil.pid_exists(int(pid)) else "dead"


def held_elsewhere(step: StepRun) -> bool:
    """Whether a running step's worker still holds it: alive (or on another host) with its
    lease renewed. The step row is locked first, so a heartbeat in flight is waited out."""
    if step.state != StepState.RUNNING:
        return False
    session = object_session(step)
    if session is not None:
        session.refresh(step, with_for_update=True)
    expires = step.lease_expires_at
    if expires is None or expires <= utcnow():
        return False
    return liveness(step.worker, step.id) != "dead"


def renew(step_run_id: uuid.UUID, attempt: int, seconds: float) -> bool:
    """Push the lease of this attempt `seconds` ahead; False when the step is no longer ours
    (reaped, cancelled, reclaimed), so the heartbeat stops."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(StepRun)
            .where(
                StepRun.id == step_run_id,
                StepRun.state == StepState.RUNNING.value,
                StepRun.attempt == attempt,
                StepRun.waiting_for.is_(None),  # a step waiting (children, approval) holds none
                StepRun.lease_expires_at.is_not(None),
            )
            .values(
                heartbeat_at=now,
                lease_expires_at=func.greatest(
                    StepRun.lease_expires_at, store.lease_deadline(seconds)
                ),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))


@contextmanager
def heartbeat(step_run_id: uuid.UUID, attempt: int, settings: Settings) -> Iterator[None]:
    """Renew the lease every third of it while the body runs; stopped (and joined) on exit."""
    seconds = float(settings.step_lease_seconds)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not renew(step_run_id, attempt, seconds):
                    log.warning("lease.lost", step_run_id=str(step_run_id), attempt=attempt)
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("lease.renew_failed", step_run_id=str(step_run_id), error=str(exc))

    thread = threading.Thread(target=beat, name=f"agent33-lease-{step_run_id}", daemon=True)
    with _executing_lock:
        _executing.add(step_run_id)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        with _executing_lock:
            _executing.discard(step_run_id)
        thread.join(timeout=max(seconds, 5.0))

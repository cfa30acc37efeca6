"""Benchmark plumbing: services (embedded or from the environment), one worker, Agent33 runs.

Everything started here is stopped on exit, also on Ctrl-C, SIGTERM or an exception.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from sqlalchemy import Connection, text

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "cancelled")


class BenchmarkError(RuntimeError):
    """A run did not succeed, or the worker did not start; the message says which and why."""


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every `finally` below stops what it started."""
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def services() -> Iterator[Any]:
    """Resolved settings: DATABASE_URL/REDIS_URL from the environment, else private embedded ones.

    The database is migrated and this process (SQLAlchemy and the Celery app) is bound to it.
    Embedded servers run with the durability `agent33 serve` gives them (PostgreSQL fsyncs its
    commits, Redis appends to its AOF): the figures are the ones users get.
    """
    from agent33 import db
    from agent33.config import load_settings
    from agent33.db import migrate
    from agent33.embedded import embedded_services
    from tasks.app import configure_app

    var_dir = Path(tempfile.mkdtemp(prefix="agent33-bench-"))
    try:
        settings = load_settings().replace(var_dir=var_dir)
        with embedded_services(settings) as resolved:
            assert resolved.database_url is not None
            migrate.upgrade(resolved.database_url)
            db.configure(resolved)
            configure_app(resolved)
            try:
                yield resolved
            finally:
                from agent33.db.session import dispose_engine

                _release_results()
                dispose_engine()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def _release_results() -> None:
    """Drop the result backend's pending results while Redis still runs.

    A chain of groups leaves results subscribed; their `__del__` unsubscribes, which fails with
    a traceback at interpreter exit once Redis is gone.
    """
    from tasks.app import app

    pending = getattr(app.backend, "_pending_results", None)
    if pending is not None:
        pending.concrete.clear()
        pending.weak.clear()
    gc.collect()
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is None:
        return
    with contextlib.suppress(Exception):
        consumer.stop()
    if hasattr(consumer, "_pubsub"):
        # Results still referenced (e.g. by an interrupted `.get()`'s traceback) then skip
        # unsubscribing when they are collected after Redis stopped.
        consumer._pubsub = None


@dataclass
class Worker:
    """One `celery worker` subprocess consuming `steps` (Agent33 steps and `bench.noop`)."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def task_errors(self) -> list[str]:
        """The worker log's `raised unexpected` lines (tasks that crashed instead of recording)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if "raised unexpected" in line]


def _worker_env(settings: Any) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.database_url
    env["REDIS_URL"] = settings.redis_url
    env["AGENT33_VAR_DIR"] = str(settings.var_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _wait_for_ping(app: Any, worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise BenchmarkError(
                f"the worker exited with {worker.process.returncode}:\n{worker.log_tail()}"
            )
        if app.control.ping(timeout=0.5):
            return
    raise BenchmarkError(
        f"the worker did not answer a ping in {timeout:.0f}s:\n{worker.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Warm shutdown (SIGTERM, wait), then SIGKILL the worker's whole process group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.contextmanager
def worker(settings: Any, *, concurrency: int, log_dir: Path) -> Iterator[Worker]:
    """Start the worker (its own process group), wait for its ping reply, stop it on exit."""
    from benchmarks.bench_app import app

    log_path = log_dir / "worker.log"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.bench_app",
        "worker",
        "-Q",
        "steps",
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--loglevel",
        "WARNING",
        "--without-mingle",
        "--without-gossip",
        "--hostname",
        f"bench-{uuid.uuid4().hex[:8]}@%h",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv,
            cwd=REPO_ROOT,
            env=_worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Worker(process, log_path)
    try:
        _wait_for_ping(app, handle, timeout=60.0)
        yield handle
    finally:
        _stop(process)


def register_workflow(document: dict[str, Any]) -> str:
    """Validate and store the document (an identical re-save is a no-op); returns its name."""
    from agent33.db import session_scope
    from agent33.definitions.loader import parse_workflow
    from agent33.definitions.registry import save_workflow

    workflow = parse_workflow(document, origin="benchmark")
    with session_scope() as session:
        save_workflow(session=session, workflow=workflow, document=document, source="benchmark")
    return workflow.name


@dataclass(frozen=True)
class StepTimings:
    """Where a finished run's time went, from the step rows' timestamps.

    `in_step_ms`: mean started_at -> finished_at (claim committed, action, record up to its
    commit). `handoff_ms`: mean from the last dependency's finished_at to the step's started_at
    (record commit, outbox publish, broker, worker pick-up, claim up to its lock). `first_start_ms`:
    run created -> first step started. `created_to_finished_s`: the run as the database saw it.
    """

    in_step_ms: float
    handoff_ms: float
    first_start_ms: float
    created_to_finished_s: float

    def describe(self) -> str:
        return (
            f"in-step {self.in_step_ms:.1f} ms, handoff {self.handoff_ms:.1f} ms,"
            f" created->first start {self.first_start_ms:.0f} ms,"
            f" created->finished {self.created_to_finished_s:.2f} s"
        )


@dataclass(frozen=True)
class Agent33Result:
    seconds: float
    timed_out: bool
    run_id: uuid.UUID
    timings: StepTimings | None = None


def _poll_connection() -> Connection:
    from agent33.db import get_engine

    return get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")


def _timings(conn: Connection, run_id: uuid.UUID) -> StepTimings:
    created, finished = conn.execute(
        text("SELECT created_at, finished_at FROM runs WHERE id = :id"), {"id": run_id}
    ).one()
    rows = conn.execute(
        text(
            "SELECT step_id, depends_on, started_at, finished_at FROM step_runs WHERE run_id = :id"
        ),
        {"id": run_id},
    ).all()
    ends = {row.step_id: row.finished_at for row in rows}
    in_step = [(row.finished_at - row.started_at).total_seconds() for row in rows]
    handoffs = [
        (row.started_at - max(ends[d] for d in row.depends_on)).total_seconds()
        for row in rows
        if row.depends_on
    ]
    first = min(row.started_at for row in rows)

    def mean_ms(values: list[float]) -> float:
        return 1000 * sum(values) / len(values) if values else 0.0

    return StepTimings(
        in_step_ms=mean_ms(in_step),
        handoff_ms=mean_ms(handoffs),
        first_start_ms=1000 * (first - created).total_seconds(),
        created_to_finished_s=(finished - created).total_seconds(),
    )


def _stop_run(conn: Connection, run_id: uuid.UUID, timeout: float) -> None:
    """A timed-out run is marked cancelled (its later deliveries then exit) and drained."""
    conn.execute(
        text(
            "UPDATE runs SET state = 'cancelled', finished_at = now()"
            " WHERE id = :id AND state NOT IN ('succeeded', 'failed', 'cancelled')"
        ),
        {"id": run_id},
    )
    deadline = time.monotonic() + timeout
    busy = text(
        "SELECT count(*) FROM step_runs WHERE run_id = :id AND state IN ('queued', 'running')"
    )
    while time.monotonic() < deadline and conn.execute(busy, {"id": run_id}).scalar_one():
        time.sleep(0.2)


def run_agent33(workflow_name: str, *, timeout: float, poll: float = 0.01) -> Agent33Result:
    """Start a run, publish its first segment, poll the run row until it ends (or `timeout`).

    The wall time covers creating the run rows, publishing, every step, and noticing the end.
    Raises BenchmarkError (with the run's error) unless the run succeeded.
    """
    from agent33.db import session_scope
    from agent33.engine.service import start_run
    from tasks.app import current_settings
    from tasks.dispatch import flush_outbox

    with _poll_connection() as conn:
        started = time.perf_counter()
        with session_scope() as session:
            run, outbox_ids, _ = start_run(
                session=session,
                settings=current_settings(),
                workflow_name=workflow_name,
                inputs={},
            )
            run_id = run.id
        flush_outbox(outbox_ids)
        query = text("SELECT state, error FROM runs WHERE id = :id")
        while True:
            state, error = conn.execute(query, {"id": run_id}).one()
            elapsed = time.perf_counter() - started
            if state in TERMINAL:
                break
            if elapsed > timeout:
                _stop_run(conn, run_id, timeout=max(60.0, timeout))
                return Agent33Result(elapsed, True, run_id)
            time.sleep(poll)
        if state != "succeeded":
            raise BenchmarkError(f"run {run_id} of {workflow_name!r} ended {state}: {error}")
        return Agent33Result(elapsed, False, run_id, _timings(conn, run_id))


@contextlib.contextmanager
def served_api(settings: Any, log: Path) -> Iterator[str]:
    """The API exactly as `agent33 serve` starts it (its gunicorn command and default worker
    and thread counts), on a free port."""
    from agent33.cli.serve import WEB_WORKERS, commands
    from agent33.embedded import free_port

    port = free_port()
    argv = commands(settings.replace(api_port=port), "127.0.0.1", WEB_WORKERS, 1)["web"]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, cwd=REPO_ROOT, env=_worker_env(settings), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/health", timeout=2)
                break
            except requests.RequestException:
                if process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited: see {log}") from None
                time.sleep(0.2)
        yield url
    finally:
        _stop(process)

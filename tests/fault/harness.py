"""The fault bench: real worker processes on a private Redis, beat's housekeeping, and a ledger.

Every fault test runs workflows whose steps POST to the ledger (a real HTTP server on
127.0.0.1) through `http_request`, so what each step *did* is counted outside Agent33: a step
that ran twice shows up as two calls (with the same `Idempotency-Key`). After the fault the
bench checks the invariants of shared/RELIABILITY.md: every run terminal, no step recorded
`succeeded` twice, no accepted run lost; and prints how many executions were duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psutil
from celery import Celery

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import ManagedServer, start_redis
from agent33.engine import outbox, planner, reaper, service
from agent33.engine.outbox import publish_pending
from agent33.engine.states import RUN_TERMINAL
from tests.integration.engine.helpers import events_of, save

ALL_QUEUES = "steps,llm,llm.gpu,io,maintenance"
LEASE_SECONDS = 5  # the least allowed: workers renew every third of it


class Ledger:
    """Records each POST /effect/<run>/<step> with its Idempotency-Key; `?ms=N` holds it N ms,
    `?fail=N` answers 503 to the first N calls of that step (each still counts as a call)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                _, _, run, step = path.split("/", 3)
                options = {k: int(v[0]) for k, v in parse_qs(query).items()}
                if options.get("ms"):
                    time.sleep(options["ms"] / 1000)
                with ledger.lock:
                    seen = sum(1 for call in ledger.calls if call[:2] == (run, step))
                    ledger.calls.append((run, step, self.headers.get("Idempotency-Key")))
                failing = seen < options.get("fail", 0)
                body = b'{"ok": false}' if failing else b'{"ok": true}'
                try:
                    self.send_response(503 if failing else 200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the worker was killed while waiting: the call still counts

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter((run, step) for run, step, _ in self.calls)

    def keys(self) -> dict[tuple[str, str], set[str | None]]:
        out: dict[tuple[str, str], set[str | None]] = {}
        with self.lock:
            for run, step, key in self.calls:
                out.setdefault((run, step), set()).add(key)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def chain(name: str, ledger: Ledger, steps: int = 5, ms: int = 100) -> dict[str, Any]:
    """A chain of `steps` steps, each one POST to the ledger that takes `ms`."""
    doc: dict[str, Any] = {"name": name, "inputs": {"type": "object"}, "steps": []}
    for i in range(steps):
        step: dict[str, Any] = {
            "id": f"s{i}",
            "action": "http_request",
            "with": {
                "url": f"{ledger.url}/effect/{{{{ run.id }}}}/s{i}?ms={ms}",
                "method": "POST",
                "json": {"i": i},
            },
        }
        if i:
            step["depends_on"] = [f"s{i - 1}"]
        doc["steps"].append(step)
    return doc


@dataclass
class Bench:
    """A private Redis, worker processes on it, and beat's relay + reaper ticking every 0.5 s."""

    settings: Settings
    redis: ManagedServer
    redis_dir: Path
    ledger: Ledger
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    run_ids: list[uuid.UUID] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _app: Celery | None = None

    @property
    def broker(self) -> str:
        return self.redis.url

    def publisher(self) -> Callable[[Any], Any]:
        if self._app is None:
            self._app = Celery("fault-bench")
            self._app.conf.update(
                celeryconfig.build_config(self.settings.replace(redis_url=self.broker))
            )
        app = self._app
        return lambda payload: planner.publish(payload, app)

    def publish(self, outbox_ids: list[int]) -> None:
        try:
            publish_pending(outbox_ids=outbox_ids, publisher=self.publisher())
        except Exception:  # noqa: BLE001 - broker down: the relay publishes it later, as beat does
            pass

    def start_worker(
        self, name: str = "fault", concurrency: int = 1, **env_extra: str
    ) -> subprocess.Popen[bytes]:
        assert self.settings.database_url
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
        env.update(
            DATABASE_URL=self.settings.database_url,
            REDIS_URL=self.broker,
            AGENT33_STEP_LEASE_SECONDS=str(LEASE_SECONDS),
            AGENT33_HTTP_ALLOWLIST="127.0.0.1",
            AGENT33_HTTP_ALLOW_PRIVATE="true",
            AGENT33_LOCAL_MODEL="off",
            **env_extra,
        )
        log = open(self.redis_dir.parent / f"worker-{len(self.workers)}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603 - fixed argv
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
                str(concurrency),
                "--pool",
                "prefork",
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's main process and its pool children at once."""
        try:
            family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        except psutil.NoSuchProcess:
            family = []
        for proc in family:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        process.wait(10)

    def start_runs(self, name: str, count: int) -> list[uuid.UUID]:
        ids = []
        for _ in range(count):
            with session_scope() as session:
                run, outbox_ids, _ = service.start_run(
                    session=session, settings=self.settings, workflow_name=name, inputs={}
                )
                ids.append(run.id)
            self.publish(outbox_ids)
        self.run_ids.extend(ids)
        return ids

    def housekeeping(self) -> None:
        """What beat's relay_outbox and reap_stale do, every half second, until the bench ends."""

        def tick() -> None:
            while not self._stop.wait(0.5):
                try:
                    result = reaper.reap(self.settings)
                    self.publish(result.outbox_ids)
                    self.publish(outbox.stale_ids(older_than=2))
                except Exception:  # noqa: BLE001 - PostgreSQL or Redis down: next tick
                    pass

        threading.Thread(target=tick, name="fault-beat", daemon=True).start()

    def restart_redis(self, *, wipe: bool = False) -> None:
        """Start Redis again on its own port (and data, unless `wipe`: a crash that lost it)."""
        if wipe:
            for path in self.redis_dir.glob("*.aof*"):
                if path.is_dir():
                    for inner in path.iterdir():
                        inner.unlink()
                else:
                    path.unlink()
        self.redis.restart()

    def stop_redis(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.redis.pid, sig)
        if sig != signal.SIGSTOP:
            deadline = time.monotonic() + 10
            while self.redis.alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def wait_terminal(self, timeout: float = 120) -> dict[uuid.UUID, str]:
        deadline = time.monotonic() + timeout
        states: dict[uuid.UUID, str] = {}
        while time.monotonic() < deadline:
            with session_scope() as session:
                states = {
                    rid: service.get_run(session=session, run_id=rid).state for rid in self.run_ids
                }
            if all(state in RUN_TERMINAL for state in states.values()):
                return states
            time.sleep(0.25)
        waiting = {str(k): v for k, v in states.items() if v not in RUN_TERMINAL}
        raise AssertionError(f"runs not terminal after {timeout}s: {json.dumps(waiting)[:800]}")

    def check(self, fault: str, *, expect: str = "succeeded", steps: int | None = None) -> int:
        """The invariants; prints and returns how many step executions were duplicates."""
        states = self.wait_terminal()
        assert len(states) == len(self.run_ids), "an accepted run was lost"
        wrong = {str(k): v for k, v in states.items() if v != expect}
        assert not wrong, f"{fault}: runs not {expect}: {wrong}"
        for run_id in self.run_ids:
            done = Counter(
                e.step_id for e in events_of(run_id) if e.step_id and e.to_state == "succeeded"
            )
            twice = [step for step, n in done.items() if n > 1]
            assert not twice, f"{fault}: run {run_id} recorded {twice} succeeded twice"
        counts = self.ledger.counts()
        mine = {str(r) for r in self.run_ids}
        ran = {k: n for k, n in counts.items() if k[0] in mine}
        if steps is not None and expect == "succeeded":
            assert len(ran) == steps * len(self.run_ids), f"{fault}: a step never ran"
        duplicates = sum(n - 1 for n in ran.values())
        for call, keys in self.ledger.keys().items():
            if call[0] in mine:
                assert len(keys) == 1 and None not in keys, f"{fault}: {call} keys {keys}"
        print(
            f"{fault}: {len(self.run_ids)} runs {expect}, {sum(ran.values())} step executions, "
            f"{duplicates} duplicate executions (each with the same Idempotency-Key)"
        )
        return duplicates

    def close(self) -> None:
        self._stop.set()
        for process in self.workers:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(15)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    self.kill_worker(process)
        if self.redis.alive():
            with_sigcont(self.redis.pid)
            self.redis.stop()
        self.ledger.close()


def with_sigcont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


@contextmanager
def bench(settings: Settings, tmp_path: Path) -> Iterator[Bench]:
    redis_dir = tmp_path / "redis"
    server = start_redis(redis_dir, durable=True)
    own = settings.replace(redis_url=server.url, step_lease_seconds=LEASE_SECONDS)
    made = Bench(own, server, redis_dir, Ledger())
    made.housekeeping()
    try:
        yield made
    finally:
        made.close()


def save_chain(name: str, ledger: Ledger, steps: int = 5, ms: int = 100) -> None:
    save(chain(name, ledger, steps, ms))

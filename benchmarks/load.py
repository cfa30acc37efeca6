"""Load: 1,000 runs submitted at once through the API, then run creation held at 200 requests/s.

Run:  .venv/bin/python benchmarks/load.py

The API runs as `agent33 serve` starts it (gunicorn, its worker class and thread counts), one
`celery worker` runs the steps (all queues, prefork, concurrency BENCH_WORKERS), the servers have
serve's durability. Phase 1 submits BENCH_RUNS runs from 64 client threads at once and waits for
every one of them: an accepted run that never succeeds is *lost*, a run stored twice or a step
that ran more than once (attempt > 1; no step here asks for retries) is *duplicated*. Phase 2
creates runs open-loop at BENCH_RATE per second for BENCH_SECONDS: each request is sent at its
scheduled time, and its latency is counted from that time (a client that falls behind does not
hide the server's slowness), then those runs are waited for too.

Environment: BENCH_RUNS (1000), BENCH_RATE (200), BENCH_SECONDS (30), BENCH_WORKERS (2),
DATABASE_URL/REDIS_URL (else private embedded ones).
The last line is
`load: 1000 runs, 0 lost, 0 duplicated; enqueue at 200 req/s: p50 N.N ms, p99 N.N ms`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):  # run as a script: make `benchmarks`, `agent33`, `tasks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

WORKFLOW = {
    "name": "load_chain",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "steps": [
        {"id": "a", "action": "transform", "with": {"n": "{{ inputs.n }}"}},
        {
            "id": "b",
            "action": "transform",
            "depends_on": ["a"],
            "with": {"v": "{{ steps.a.output.n }}"},
        },
    ],
}
CLIENT_THREADS = 64


@contextmanager
def beat(settings: Any, log: Path) -> Iterator[None]:
    """Beat, as `agent33 serve` runs it: its outbox relay publishes what a request left behind."""
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "WARNING"]
    argv += ["--schedule", str(Path(settings.var_dir) / "celerybeat-schedule")]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, cwd=harness.REPO_ROOT, env=harness._worker_env(settings), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield
    finally:
        harness._stop(process)


@contextmanager
def step_worker(settings: Any, concurrency: int, log: Path) -> Iterator[None]:
    """One worker on every queue, as `agent33 serve` starts it."""
    from tasks.app import app

    argv = [sys.executable, "-m", "celery", "-A", "tasks", "worker"]
    argv += ["-Q", "steps,io,maintenance", "-c", str(concurrency), "--loglevel", "WARNING"]
    argv += ["--without-mingle", "--without-gossip", "-n", f"load-{uuid.uuid4().hex[:8]}@%h"]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, cwd=harness.REPO_ROOT, env=harness._worker_env(settings), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        harness._wait_for_ping(app, harness.Worker(process, log), timeout=60.0)
        yield
    finally:
        harness._stop(process)


def api_key() -> str:
    from agent33.db import session_scope
    from agent33.security.api_keys import create_api_key

    with session_scope() as session:
        _, raw = create_api_key(
            session=session,
            name="load",
            scopes=["runs:read", "runs:write", "workflows:read"],
            rate_limit="1000000/minute",
            rate_burst=100_000,
        )
    return raw


class Client:
    """Run creation over keep-alive connections, one `requests.Session` per client thread."""

    def __init__(self, url: str, key: str) -> None:
        self.url = f"{url}/api/v1/workflows/{WORKFLOW['name']}/runs"
        self.key = key
        self.local = threading.local()

    def create(self, n: int) -> str | None:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update({"X-API-Key": self.key})
        key = uuid.uuid4().hex  # a retried request must not create a second run
        for _ in range(3):
            try:
                response = session.post(
                    self.url,
                    json={"inputs": {"n": n}},
                    headers={"Idempotency-Key": key},
                    timeout=30,
                )
            except requests.RequestException:
                continue
            if response.status_code == 202:
                return str(response.json()["id"])
        return None


def wait_all(run_ids: list[str], timeout: float) -> dict[str, int]:
    """State counts of these runs once all are terminal (or the timeout passes)."""
    from sqlalchemy import text

    from agent33.db import session_scope

    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with session_scope() as session:
            rows = session.execute(
                text(
                    "SELECT state, count(*) FROM runs WHERE id = ANY(CAST(:ids AS uuid[]))"
                    " GROUP BY state"
                ),
                {"ids": run_ids},
            )
            counts = {state: int(n) for state, n in rows}
        if sum(counts.get(s, 0) for s in harness.TERMINAL) == len(run_ids):
            return counts
        time.sleep(0.5)
    return counts


def duplicates(run_ids: list[str], created: int) -> int:
    """Runs stored beyond the `created` this client was answered for (a request stored twice),
    and steps of `run_ids` that ran more than once."""
    from sqlalchemy import text

    from agent33.db import session_scope

    with session_scope() as session:
        stored = session.scalar(
            text("SELECT count(*) FROM runs WHERE workflow_name = :name"),
            {"name": WORKFLOW["name"]},
        )
        repeated = session.scalar(
            text(
                "SELECT count(*) FROM step_runs WHERE run_id = ANY(CAST(:ids AS uuid[]))"
                " AND (attempt > 1 OR deliveries > 1)"
            ),
            {"ids": run_ids},
        )
        twice = session.scalar(
            text(
                "SELECT count(*) FROM (SELECT step_id FROM run_events"
                " WHERE run_id = ANY(CAST(:ids AS uuid[])) AND to_state = 'succeeded'"
                " AND step_id IS NOT NULL GROUP BY run_id, step_id HAVING count(*) > 1) AS t"
            ),
            {"ids": run_ids},
        )
    return int(stored or 0) - created + int(repeated or 0) + int(twice or 0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def open_loop(client: Client, rate: float, seconds: float) -> tuple[list[str], list[float], int]:
    """Send at `rate`/s for `seconds`; latency from each request's scheduled send time."""
    total = int(rate * seconds)
    latencies: list[float] = []
    ids: list[str] = []
    failed = 0
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def send(i: int) -> None:
        nonlocal failed
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        run_id = client.create(i)
        elapsed = (time.perf_counter() - due) * 1000
        with lock:
            latencies.append(elapsed)
            if run_id is None:
                failed += 1
            else:
                ids.append(run_id)

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        list(pool.map(send, range(total)))
    return ids, latencies, failed


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "1000"))
    rate = float(os.environ.get("BENCH_RATE", "200"))
    seconds = float(os.environ.get("BENCH_SECONDS", "30"))
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    with harness.sigterm_as_interrupt(), harness.services() as settings:
        harness.register_workflow(WORKFLOW)
        var = Path(settings.var_dir)
        with (
            step_worker(settings, workers, var / "worker.log"),
            beat(settings, var / "beat.log"),
            harness.served_api(settings, var / "api.log") as url,
        ):
            client = Client(url, api_key())
            warm = [client.create(i) for i in range(20)]  # the web workers' connections, caches
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
                created = list(pool.map(client.create, range(runs)))
            submitted = time.perf_counter() - started
            accepted = [run_id for run_id in created if run_id is not None]
            counts = wait_all(accepted, timeout=max(120.0, runs * 0.5))
            drained = time.perf_counter() - started
            lost = runs - counts.get("succeeded", 0)
            duplicated = duplicates(accepted, len(accepted) + len([w for w in warm if w]))
            print(
                f"phase 1: {runs} runs submitted in {submitted:.1f}s, all done in {drained:.1f}s; "
                f"states {counts}"
            )
            ids, latencies, failed = open_loop(client, rate, seconds)
            later = wait_all(ids, timeout=max(120.0, len(ids) * 0.5))
            late_lost = len(ids) - later.get("succeeded", 0) + failed
            print(
                f"phase 2: {len(latencies)} requests at {rate:g}/s for {seconds:g}s, "
                f"{failed} refused or failed, {late_lost} not succeeded; states {later}"
            )
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f"enqueue latency: p50 {p50:.1f} ms, p90 {percentile(latencies, 0.9):.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(latencies):.1f} ms")  # fmt: skip
    print(
        f"load: {runs} runs, {lost} lost, {duplicated} duplicated; "
        f"enqueue at {rate:g} req/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    if lost or duplicated or late_lost:
        sys.exit(1)


if __name__ == "__main__":
    main()

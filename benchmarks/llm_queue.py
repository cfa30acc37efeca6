"""What the chat path (HTTP API -> `llm` queue -> worker -> model) costs over calling the model.

Run:  .venv/bin/python benchmarks/llm_queue.py

A fake Ollama answers every chat after a fixed 200 ms; one `celery worker -Q llm -P threads`
subprocess runs `agent33.llm.chat` at concurrency C; the API runs as `agent33 serve` starts it
(the same gunicorn command, worker class and thread count) and the servers with serve's
durability. The load client's API key has its own rate limit, as an operator would give one.
Throughput: 200 concurrent `POST /api/v1/chat` against the ideal C / 0.2 s. Added latency: one
request at a time through the API against one direct HTTP call to the fake (p50 and p99), so
queueing behind other requests is not counted as overhead.

Environment: BENCH_CONCURRENCY (C, default 8), BENCH_REQUESTS (default 200), BENCH_SAMPLES
(sequential latency samples, default 40), DATABASE_URL/REDIS_URL (else private embedded ones).
The last line is `llm queue efficiency: 0.NN of ideal, added p50: N.N ms`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

if __package__ in (None, ""):  # run as a script: make `benchmarks`, `agent33`, `tasks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

MODEL_LATENCY_S = 0.2


@contextmanager
def llm_worker(settings: Any, ollama_url: str, concurrency: int, log: Path) -> Iterator[None]:
    """A real worker process on the `llm` queue, pointed at the fake model server."""
    from tasks.app import app

    env = {**harness._worker_env(settings), "OLLAMA_BASE_URL": ollama_url}
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "llm"]
    argv += ["-P", "threads", "-c", str(concurrency), "--loglevel", "WARNING"]
    argv += ["--without-mingle", "--without-gossip", "-n", f"llm-{uuid.uuid4().hex[:8]}@%h"]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv, cwd=harness.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    handle = harness.Worker(process, log)
    try:
        harness._wait_for_ping(app, handle, timeout=60.0)
        yield
    finally:
        harness._stop(process)


def api_key() -> str:
    from agent33.db import session_scope
    from agent33.security.api_keys import create_api_key

    with session_scope() as session:
        # A load client gets the limits an operator would give one (`keys create --rate-limit`).
        _, raw = create_api_key(
            session=session,
            name="bench",
            scopes=["agents:read"],
            rate_limit="100000/minute",
            rate_burst=10_000,
        )
    return raw


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    from tests.plugins.fakes import FakeOllama

    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    total = int(os.environ.get("BENCH_REQUESTS", "200"))
    samples = int(os.environ.get("BENCH_SAMPLES", "40"))
    with harness.sigterm_as_interrupt(), harness.services() as settings, FakeOllama() as fake:
        from agent33.db import session_scope
        from agent33.definitions.agents import parse_agent, save_agent

        fake.latency = MODEL_LATENCY_S
        document = {"name": "bench", "model": "llama3.2", "system_prompt": "Be brief."}
        with session_scope() as session:
            save_agent(session=session, agent=parse_agent(document), document=document)
        log = Path(settings.var_dir) / "llm-worker.log"
        api_log = Path(settings.var_dir) / "api.log"
        with (
            llm_worker(settings, fake.url, concurrency, log),
            harness.served_api(settings, api_log) as url,
        ):
            http = requests.Session()
            http.headers["X-API-Key"] = api_key()
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=total)
            http.mount("http://", adapter)

            def chat() -> None:
                body = {"message": f"hi {uuid.uuid4().hex[:6]}", "agent": "bench"}
                response = http.post(f"{url}/api/v1/chat", json=body, timeout=120)
                response.raise_for_status()

            def direct() -> None:
                body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
                requests.post(f"{fake.url}/api/chat", json={**body, "stream": False}, timeout=30)

            with ThreadPoolExecutor(max_workers=concurrency) as pool:  # warm every worker thread
                list(pool.map(lambda _: chat(), range(concurrency * 2)))
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=total) as pool:
                list(pool.map(lambda _: chat(), range(total)))
            elapsed = time.perf_counter() - started
            via_api = [timed(chat) for _ in range(samples)]
            baseline = [timed(direct) for _ in range(samples)]
    throughput = total / elapsed
    ideal = concurrency / MODEL_LATENCY_S
    p50 = statistics.median(via_api) - statistics.median(baseline)
    p99 = percentile(via_api, 0.99) - percentile(baseline, 0.99)
    print(f"{total} concurrent chats in {elapsed:.2f}s: {throughput:.1f}/s (ideal {ideal:.0f}/s)")
    direct_p50, api_p50 = statistics.median(baseline), statistics.median(via_api)
    print(f"direct model call p50 {direct_p50:.1f} ms; via the API p50 {api_p50:.1f} ms")
    print(f"added p99: {p99:.1f} ms")
    print(f"llm queue efficiency: {throughput / ideal:.2f} of ideal, added p50: {p50:.1f} ms")


if __name__ == "__main__":
    main()

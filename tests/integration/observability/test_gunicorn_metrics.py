"""`/metrics` under gunicorn (`--config python:web.gunicorn_conf`): multiprocess mode is on in
every worker, the directory is emptied at start, and any worker answers with the sum; and
gunicorn's own lines follow AGENT33_LOG_FORMAT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent33.config import Settings
from agent33.embedded import free_port
from tests.integration.observability.support import eventually, parse, value

pytestmark = [pytest.mark.observability, pytest.mark.e2e, pytest.mark.timeout(60)]
REQUESTS = 12


@pytest.fixture
def gunicorn(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    assert settings.database_url and settings.redis_url
    path = tmp_path / "metrics"
    path.mkdir()
    (path / "histogram_1.db").write_bytes(b"stale")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT33_", "OTEL_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(path),
        AGENT33_LOG_FORMAT="json",
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - a fixed argv
            [sys.executable, "-m", "gunicorn", "web.wsgi:app"]
            + ["--config", "python:web.gunicorn_conf"]
            + ["--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _up(url, process), timeout=30)
        yield url, path, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _up(url: str, process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, "gunicorn exited"
    try:
        requests.get(f"{url}/metrics", timeout=2).raise_for_status()
    except requests.RequestException as exc:
        raise AssertionError(str(exc)) from None


def test_every_worker_answers_with_the_sum(gunicorn: tuple[str, Path, Path]) -> None:
    url, path, log = gunicorn
    assert not (path / "histogram_1.db").exists(), "the directory is emptied at start"
    for _ in range(REQUESTS):
        assert requests.get(f"{url}/no/such/page", timeout=5).status_code == 404
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    for _ in range(6):  # new connections: whichever worker answers, it sums all of them
        text = requests.get(f"{url}/metrics", timeout=5, headers={"Connection": "close"}).text
        count = value(parse(text), "agent33_http_request_duration_seconds_count", **unmatched)
        assert count == REQUESTS
    assert list(path.glob("histogram_*.db")), "workers write their samples to the directory"
    lines = log.read_text().splitlines()
    booted = [json.loads(line) for line in lines if "Booting worker" in line]
    assert len(booted) == 2, lines
    assert all(r["logger"] == "gunicorn.error" and r["level"] == "info" for r in booted)

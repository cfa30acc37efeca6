"""The live stream under gunicorn's gthread workers (the Procfile's web role): events arrive
as the run changes, not buffered until the end, and the stream ends when the run does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from celery import Celery

from agent33.config import Settings
from agent33.embedded import free_port
from tests.integration.dashboard.helpers import TOKEN
from tests.integration.observability.support import eventually

pytestmark = [
    pytest.mark.dashboard,
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.usefixtures("celery_worker", "stored_workflows", "empty_rate_buckets"),
]


@pytest.fixture
def gunicorn(settings: Settings, celery_app: Celery, tmp_path: Path) -> Iterator[str]:
    assert settings.database_url and settings.redis_url
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT33_", "OTEL_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        # The session worker listens under its own key prefix; this server publishes there too.
        AGENT33_CELERY_EXTRA=json.dumps(
            {"broker_transport_options": dict(celery_app.conf.broker_transport_options)}
        ),
    )
    (tmp_path / "metrics").mkdir()
    with (tmp_path / "gunicorn.log").open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - a fixed argv
            [sys.executable, "-m", "gunicorn", "web.wsgi:app"]
            + ["--config", "python:web.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "1", "--worker-class", "gthread", "--threads", "4"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _up(url, process), timeout=30)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _up(url: str, process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, "gunicorn exited"
    try:
        requests.get(f"{url}/login", timeout=2).raise_for_status()
    except requests.RequestException as exc:
        raise AssertionError(str(exc)) from None


def _token(session: requests.Session, url: str) -> str:
    found = TOKEN.search(session.get(url, timeout=10).text)
    assert found
    return found.group(1)


def test_the_stream_is_live_under_gthread_and_ends_with_the_run(
    gunicorn: str, admin_headers: dict[str, str]
) -> None:
    browser = requests.Session()
    token = _token(browser, f"{gunicorn}/login")
    logged_in = browser.post(
        f"{gunicorn}/login",
        data={"api_key": admin_headers["X-API-Key"], "csrf_token": token},
        timeout=10,
        allow_redirects=False,
    )
    assert logged_in.status_code == 302
    token = _token(browser, f"{gunicorn}/runs")
    started = browser.post(
        f"{gunicorn}/workflows/example_approval/runs",
        data={"csrf_token": token},
        timeout=10,
        allow_redirects=False,
    )
    assert started.status_code == 302, started.text
    run_id = re.sub(r"^.*/runs/", "", started.headers["Location"])

    states: list[str] = []
    with browser.get(f"{gunicorn}/runs/{run_id}/live", stream=True, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "run":
                data = json.loads(line.removeprefix("data: "))
                states.append(data["state"])
                if data["state"] == "waiting":  # seen before the run ends: not buffered
                    cancelled = browser.post(
                        f"{gunicorn}/runs/{run_id}/cancel",
                        data={"csrf_token": token},
                        timeout=10,
                        allow_redirects=False,
                    )
                    assert cancelled.status_code == 302
            elif line.startswith("data: ") and event == "end":
                assert json.loads(line.removeprefix("data: ")) == {"state": "cancelled"}
                break
        else:
            raise AssertionError(f"the stream closed without `end`: {states}")
    assert "waiting" in states and states[-1] == "cancelled"

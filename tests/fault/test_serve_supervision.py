"""`agent33 serve` restarts what dies: the embedded Redis (SIGKILL) and the worker come back on
their own, `/health` says so, and runs complete afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from agent33.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.fault, pytest.mark.e2e, pytest.mark.timeout(300)]


def _until(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (requests.RequestException, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _pid_listening(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            assert conn.pid is not None
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_serve_restarts_a_killed_embedded_redis_and_worker(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("AGENT33_")
    }
    api_port = free_port()
    env.update(
        API_PORT=str(api_port),
        AGENT33_VAR_DIR=str(tmp_path / "var"),
        AGENT33_DEFINITIONS_DIR=str(ROOT / "definitions"),
        AGENT33_LOCAL_MODEL="off",
    )
    serve = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agent33.cli", "serve", "--concurrency", "1", "--web-workers", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )
    api = f"http://127.0.0.1:{api_port}"
    var = tmp_path / "var"
    try:
        _until("the supervisor", lambda: (var / "supervisor.json").exists(), timeout=180)
        key = (var / "admin_api_key").read_text().strip()
        headers = {"X-API-Key": key}
        redis_url = json.loads((var / "embedded.json").read_text())["redis_url"]
        redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

        def run_succeeds() -> bool:
            created = requests.post(
                f"{api}/api/v1/workflows/demo_greeting/runs",
                json={"inputs": {"name": "again", "times": 1}},
                headers=headers,
                timeout=10,
            )
            assert created.status_code == 202, created.text
            run_id = created.json()["id"]
            return bool(
                _until(
                    "the run to succeed",
                    lambda: (
                        requests.get(
                            f"{api}/api/v1/runs/{run_id}", headers=headers, timeout=10
                        ).json()["state"]
                        == "succeeded"
                    ),
                )
            )

        assert run_succeeds()
        old_redis = _pid_listening(redis_port)
        os.kill(old_redis, signal.SIGKILL)
        health = _until(
            "/health to report redis restarted",
            lambda: (
                (body := requests.get(f"{api}/health", timeout=10).json())["processes"]["redis"][
                    "restarts"
                ]
                == 1
                and body["services"]["broker"]["status"] == "up"
                and body
            ),
        )
        assert health["processes"]["redis"]["state"] == "running"
        assert _pid_listening(redis_port) != old_redis  # the same port, a new server
        assert run_succeeds()

        worker = next(
            p
            for p in psutil.Process(serve.pid).children()
            if "worker" in " ".join(p.cmdline()) and "celery" in " ".join(p.cmdline())
        )
        worker.kill()
        _until(
            "the worker restarted",
            lambda: (
                requests.get(f"{api}/health", timeout=10).json()["processes"]["worker"]["restarts"]
                == 1
            ),
        )
        assert run_succeeds()
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        output, _ = serve.communicate(timeout=90)
    assert "supervisor: redis died; restarting it" in output, output[-3000:]
    assert "supervisor: redis restarted (restart 1)" in output
    assert "supervisor: worker restarted (restart 1)" in output
    assert not (var / "supervisor.json").exists()

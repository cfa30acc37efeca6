"""`agent33 flower` (the Procfile's `flower` role) with credentials from settings: Flower
answers only to that pair, and the password never appears on a command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from agent33.config import Settings
from agent33.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.observability, pytest.mark.timeout(120)]


def _answer(url: str, auth: tuple[str, str] | None, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return requests.get(f"{url}/api/workers", auth=auth, timeout=10).status_code
        except requests.RequestException:
            time.sleep(0.3)
    raise AssertionError("Flower never answered")


def test_flower_uses_the_credentials_from_settings(tmp_path: Path, settings: Settings) -> None:
    assert settings.database_url and settings.redis_url
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("AGENT33_")
    }
    env.update(
        AGENT33_VAR_DIR=str(tmp_path / "var"),
        AGENT33_FLOWER_USER="ops",
        AGENT33_FLOWER_PASSWORD="flower-pw-from-settings",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        PYTHONPATH=str(ROOT),
    )
    port = free_port()
    flower = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agent33.cli", "flower", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert _answer(url, ("ops", "flower-pw-from-settings")) == 200
        assert _answer(url, None) == 401
        assert _answer(url, ("ops", "wrong")) == 401
        health = requests.get(f"{url}/healthcheck", timeout=10)  # the compose healthcheck's
        assert (health.status_code, health.text) == (200, "OK")
        args = subprocess.run(  # noqa: S607 - fixed argv
            ["ps", "-eo", "args"], capture_output=True, text=True, check=True
        ).stdout
        assert "flower" in args and "flower-pw-from-settings" not in args
        assert not (tmp_path / "var" / "flower_credentials").exists(), "nothing generated"
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.communicate(timeout=30)

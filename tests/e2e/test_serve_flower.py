"""`agent33 serve --flower`: Flower on the same broker, its API behind generated basic auth."""

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
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _workers(url: str, auth: tuple[str, str] | None, timeout: float = 90) -> requests.Response:
    """GET /api/workers once Flower answers (and, with auth, once it lists a worker)."""
    deadline = time.monotonic() + timeout
    last: requests.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"{url}/api/workers?refresh=1", auth=auth, timeout=10)
            if last.status_code != 200 or last.json():
                return last
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Flower never answered with a worker: {last and last.text[:300]}")


def test_serve_flower_requires_the_generated_credentials(
    tmp_path: Path, settings: Settings
) -> None:
    assert settings.database_url and settings.redis_url
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("AGENT33_")
    }
    flower_port = free_port()
    env.update(
        API_PORT=str(free_port()),
        AGENT33_VAR_DIR=str(tmp_path / "var"),
        AGENT33_DEFINITIONS_DIR=str(ROOT / "definitions"),
        AGENT33_LOCAL_MODEL="off",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url.rsplit("/", 1)[0] + "/10",
    )
    argv = ["serve", "--flower", "--flower-port", str(flower_port), "--concurrency", "1"]
    serve = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agent33.cli", *argv, "--web-workers", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,  # like a terminal: Ctrl-C goes to the whole foreground group
    )
    url = f"http://127.0.0.1:{flower_port}"
    try:
        stored = tmp_path / "var" / "flower_credentials"
        deadline = time.monotonic() + 60
        while not stored.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        user, _, password = stored.read_text().strip().partition(":")
        assert stored.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "var" / "flowerconfig.py").stat().st_mode & 0o777 == 0o600
        allowed = _workers(url, (user, password))
        assert allowed.status_code == 200, allowed.text[:300]
        assert any(name.startswith("serve@") for name in allowed.json())
        assert _workers(url, None).status_code == 401
        assert _workers(url, (user, "wrong")).status_code == 401
        flower = [line for line in _ps() if "flower" in line]
        assert flower and not any(password in line for line in flower)
        assert (tmp_path / "var" / "gunicorn.ctl").exists()  # under var/, not in $HOME
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C
        output, _ = serve.communicate(timeout=60)
    assert f"Flower: {url}" in output and f"password (shown once): {password}" in output
    assert "stopping..." in output
    beat = (tmp_path / "var" / "logs" / "beat.log").read_text()
    assert "closed shelf" not in beat and "Traceback" not in beat


def _ps() -> list[str]:
    return subprocess.run(  # noqa: S607 - fixed argv
        ["ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()

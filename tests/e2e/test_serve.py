"""`agent33 serve --demo` end to end: real processes (gunicorn, celery worker, beat)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent33.config import Settings
from agent33.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "agent33.cli",
        "serve",
        "--demo",
        "--exit-after-demo",
        "--concurrency",
        "1",
        "--web-workers",
        "1",
    ]
    return subprocess.run(  # noqa: S603
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=200, check=False
    )


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("AGENT33_")
    }
    env.update(
        API_PORT=str(free_port()),
        AGENT33_VAR_DIR=str(tmp_path / "var"),
        AGENT33_DEFINITIONS_DIR=str(ROOT / "definitions"),
    )
    return env


def _assert_demo_succeeded(result: subprocess.CompletedProcess[str], port: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "demo: run" in output and "succeeded" in output, output[-3000:]
    assert '"greeting": "Hello, World!"' in output
    assert f"API: http://127.0.0.1:{port}" in output


def _leftovers(var: Path, grace: float = 5.0) -> str:
    """Command lines of processes still using `var`, after a short grace for exits in flight
    (a child reaped just after serve returned); empty when none."""
    deadline = time.monotonic() + grace
    while True:
        found = subprocess.run(  # noqa: S607
            ["pgrep", "-a", "-f", str(var)], capture_output=True, text=True
        ).stdout.strip()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_embedded_serve_runs_the_demo_and_stops_everything(tmp_path: Path) -> None:
    env = _base_env(tmp_path)
    result = _serve(env, tmp_path)
    _assert_demo_succeeded(result, env["API_PORT"])
    output = result.stdout
    assert "embedded PostgreSQL" in output and "local admin API key" in output
    key_file = tmp_path / "var" / "admin_api_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "var" / "embedded.json").exists()
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()
    leftovers = _leftovers(tmp_path / "var")
    assert leftovers == "", f"embedded servers still running after serve exited:\n{leftovers}"
    again = _serve(env, tmp_path)  # a second start reuses the data and the admin key
    _assert_demo_succeeded(again, env["API_PORT"])
    assert "shown once" not in again.stdout
    assert f"local admin API key: in {key_file}" in again.stdout  # where it is, every start


def test_serve_with_external_urls_starts_no_embedded_server(
    tmp_path: Path, settings: Settings
) -> None:
    env = _base_env(tmp_path)
    assert settings.database_url and settings.redis_url
    env.update(
        DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url.rsplit("/", 1)[0] + "/11"
    )
    result = _serve(env, tmp_path)
    _assert_demo_succeeded(result, env["API_PORT"])
    assert "embedded" not in result.stdout
    assert not (tmp_path / "var" / "pg").exists() and not (tmp_path / "var" / "redis").exists()

"""`agent33 flower`: credentials from settings, generated outside production, refused in
production without them; the generated config file is private and the argv carries no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import celeryconfig
from agent33.cli import flower
from agent33.config import ConfigError, Settings, load_settings

pytestmark = pytest.mark.observability
ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = {
    "AGENT33_ENV": "production",
    "API_SECRET_KEY": "k" * 40,
    "JWT_SECRET": "j" * 40,
    "ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:9/db",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"AGENT33_VAR_DIR": str(tmp_path / "var"), **env}, dotenv_path=None)


def test_production_without_credentials_is_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **PRODUCTION)
    with pytest.raises(ConfigError, match="AGENT33_FLOWER_USER and AGENT33_FLOWER_PASSWORD"):
        flower.credentials(settings)
    assert not (tmp_path / "var" / flower.CREDENTIALS_FILE).exists(), "nothing generated"


def test_half_a_pair_is_refused_anywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AGENT33_FLOWER_PASSWORD must be set"):
        flower.credentials(settings_for(tmp_path, AGENT33_FLOWER_USER="ops"))


def test_configured_credentials_go_to_a_private_config_file_not_the_argv(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, **PRODUCTION, AGENT33_FLOWER_USER="ops", AGENT33_FLOWER_PASSWORD="s3cret-pw"
    )
    user, password, new = flower.credentials(settings)
    assert (user, password, new) == ("ops", "s3cret-pw", False)
    argv = flower.command(settings, 5599, user, password, "0.0.0.0")
    assert not any("s3cret-pw" in word for word in argv)
    assert "--address=0.0.0.0" in argv and "--port=5599" in argv
    config = tmp_path / "var" / flower.CONFIG_FILE
    assert f"--conf={config.absolute()}" in argv
    assert config.stat().st_mode & 0o777 == 0o600
    namespace: dict[str, object] = {}
    exec(config.read_text(), namespace)  # noqa: S102 - the file Flower itself will exec
    assert namespace["basic_auth"] == ["ops:s3cret-pw"]


def test_development_generates_a_pair_once(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    user, password, new = flower.credentials(settings)
    assert user == flower.USER and len(password) >= 20 and new
    stored = tmp_path / "var" / flower.CREDENTIALS_FILE
    assert stored.stat().st_mode & 0o777 == 0o600
    assert flower.credentials(settings) == (user, password, False)


def test_the_command_refuses_in_production_with_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT33_")}
    env.update(PRODUCTION, PYTHONPATH=str(ROOT), AGENT33_VAR_DIR=str(tmp_path / "var"))
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agent33.cli", "flower"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "refuses to start without authentication in production" in result.stderr
    assert "Traceback" not in result.stderr


def test_task_events_follow_the_setting(tmp_path: Path) -> None:
    off = celeryconfig.build_config(settings_for(tmp_path))
    on = celeryconfig.build_config(settings_for(tmp_path, AGENT33_TASK_EVENTS="true"))
    assert (off["worker_send_task_events"], off["task_send_sent_event"]) == (False, False)
    assert (on["worker_send_task_events"], on["task_send_sent_event"]) == (True, True)

"""`agent33 runs rerun|pin|unpin|purge` as a user types them: a real API server and worker for
rerun and pin, the database directly for purge."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models import Run
from agent33.security.api_keys import create_api_key
from tests.integration.cli.test_cli import agent33, live_api  # noqa: F401 - the fixture
from tests.integration.engine.helpers import start, wait_for

pytestmark = pytest.mark.run_control
CHAIN = {
    "name": "cli_chain",
    "inputs": {"type": "object"},
    "steps": [
        {"id": "one", "action": "transform", "with": {"v": "{{ 1 }}"}},
        {"id": "two", "action": "transform", "depends_on": ["one"], "with": {"v": "{{ 2 }}"}},
    ],
    "outputs": {"two": "{{ steps.two.output.v }}"},
}


def test_rerun_and_pin_from_the_command_line(live_api: str, tmp_path: Path) -> None:  # noqa: F811
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=["runs:read", "runs:write"])
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": key}
    original = wait_for(start(CHAIN))
    rerun = agent33(["runs", "rerun", str(original.id), "--from", "two", "--wait"], tmp_path, **env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"reruns {original.id} from two (copied: one)" in rerun.stdout
    assert "succeeded" in rerun.stdout and '"two": 2' in rerun.stdout
    unknown = agent33(["runs", "rerun", str(original.id), "--from", "ghost"], tmp_path, **env)
    assert unknown.returncode == 1 and "ghost" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = agent33(
        ["runs", "rerun", str(original.id), "--from", "two", "--inputs", "[1]"], tmp_path, **env
    )
    assert bad.returncode == 2 and "--inputs" in bad.stderr
    pinned = agent33(["runs", "pin", str(original.id)], tmp_path, **env)
    assert pinned.returncode == 0 and f"run {original.id} pinned" in pinned.stdout
    with session_scope() as session:
        assert session.get(Run, original.id).pinned is True  # type: ignore[union-attr]
    unpinned = agent33(["runs", "unpin", str(original.id)], tmp_path, **env)
    assert unpinned.returncode == 0 and "unpinned" in unpinned.stdout


@pytest.mark.usefixtures("committed_db", "celery_worker")
def test_purge_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url
    old = wait_for(start(CHAIN))
    young = wait_for(start(CHAIN))
    with session_scope() as session:
        row = session.get(Run, old.id)
        assert row is not None
        row.finished_at = utcnow() - dt.timedelta(days=12)
    db = {"DATABASE_URL": settings.database_url}
    dry = agent33(["runs", "purge", "--older-than", "10", "--dry-run", "--json"], tmp_path, **db)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["runs"] == 1
    assert _exists(old.id)
    purged = agent33(["runs", "purge", "--older-than", "10"], tmp_path, **db)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("deleted 1 runs")
    assert not _exists(old.id) and _exists(young.id)
    negative = agent33(["runs", "purge", "--older-than", "0"], tmp_path, **db)
    assert negative.returncode == 2 and "--older-than" in negative.stderr


def _exists(run_id: uuid.UUID) -> bool:
    with session_scope() as session:
        return session.get(Run, run_id) is not None

"""`agent33 runs replay` and the usage table of `agent33 runs show`, through a real API server
and worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent33.config import Settings
from tests.integration.cli.test_cli import _key, agent33, live_api
from tests.integration.engine.helpers import start, wait_for
from tests.integration.run_control.support import chats, store_agent, worker_on

pytestmark = [pytest.mark.run_control]
__all__ = ["live_api"]  # the fixture, imported for these tests

FLOW = {
    "name": "cli_replayed",
    "inputs": {"type": "object"},
    "budget": {"tokens": 100_000},
    "steps": [{"id": "ask", "action": "invoke_agent", "with": {"agent": "counter", "input": "hi"}}],
}


def test_runs_replay_prints_an_empty_diff_and_show_prints_usage(
    live_api: str, settings: Settings, fake_ollama: Any, tmp_path: Path
) -> None:
    store_agent()
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": _key("runs:read", "runs:write")}
    with worker_on(settings, fake_ollama.url):
        run = wait_for(start(FLOW))
        assert run.state == "succeeded", run.error
        made = chats(fake_ollama)
        replayed = agent33(["runs", "replay", str(run.id), "--strict"], tmp_path, **env)
        assert replayed.returncode == 0, replayed.stderr
        assert "no differences" in replayed.stdout and chats(fake_ollama) == made
        as_json = agent33(["runs", "replay", str(run.id), "--json"], tmp_path, **env)
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["differences"] == []
    shown = agent33(["runs", "show", str(run.id)], tmp_path, **env)
    assert shown.returncode == 0, shown.stderr
    usage_rows = [line.split() for line in shown.stdout.splitlines() if line.startswith("ask")]
    assert usage_rows and any(row[-1] == "1" for row in usage_rows), shown.stdout
    assert "budget: tokens 100000; used" in shown.stdout
    missing = agent33(["runs", "replay", "00000000-0000-0000-0000-000000000000"], tmp_path, **env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr

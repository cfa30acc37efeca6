"""The shipped event sensor, synced as `agent33 serve` does, driven by the CLI over a real API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from agent33.automation.sensors import sync_sensors
from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import free_port
from agent33.security.api_keys import create_api_key
from tests.integration.automation.helpers import runs_by
from tests.integration.cli.test_cli import agent33
from tests.integration.engine.helpers import wait_for
from web import create_app

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("stored_workflows")]


@pytest.fixture
def cli_env(settings: Settings, celery_worker: object) -> Iterator[dict[str, str]]:
    with session_scope() as session:
        synced = sync_sensors(
            session=session, settings=settings, directory=settings.definitions_dir
        )
        assert [s.name for s in synced] == ["greet_event"]
        _, key = create_api_key(
            session=session, name="cli", scopes=["sensors:read", "events:write"]
        )
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"AGENT33_API_URL": f"http://127.0.0.1:{port}", "AGENT33_API_KEY": key}
    finally:
        server.shutdown()


def test_events_send_twice_with_a_key_starts_one_run_and_sensors_show_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    send = ["events", "send", "greet", "--payload", '{"name": "ada"}', "--key", "order-1"]
    first = agent33([*send, "--json"], tmp_path, **cli_env)
    assert first.returncode == 0, first.stderr
    [run] = json.loads(first.stdout)["runs"]
    second = agent33(send, tmp_path, **cli_env)
    assert second.returncode == 0 and f"run {run['id']}" in second.stdout
    assert "seen before" in second.stdout
    done = wait_for(runs_by("greet_event")[0].id)
    assert done.state == "succeeded" and done.outputs == {
        "greeting": "Hello, Ada!",
        "summary": "Hello, Ada! (2 hellos)",
        "words": 2,
    }
    assert len(runs_by("greet_event")) == 1

    shown = agent33(["sensors", "show", "greet_event"], tmp_path, **cli_env)
    assert shown.returncode == 0, shown.stderr
    assert f"last run:      {run['id']}" in shown.stdout and "runs started:  1" in shown.stdout
    listed = agent33(["sensors", "list"], tmp_path, **cli_env)
    assert "greet_event" in listed.stdout and "event greet" in listed.stdout

    unknown = agent33(["events", "send", "nobody"], tmp_path, **cli_env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: POST /api/v1/events/nobody: no sensor listens to event 'nobody'"
    ]

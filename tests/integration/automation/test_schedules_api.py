"""`/api/v1/schedules` and `agent33 schedules`: validation naming the field, CRUD, pause, resume,
trigger, upcoming, scopes, and schedules declared by a workflow."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from agent33.cli import cli as main_group
from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import free_port
from agent33.security.api_keys import create_api_key
from tests.integration.automation.helpers import QUICK, runs_of
from tests.integration.cli.test_cli import agent33
from tests.integration.engine.helpers import save
from tests.plugins.web import MakeApiKey
from web import create_app

pytestmark = pytest.mark.automation
URL = "/api/v1/schedules"


@pytest.fixture
def headers(make_api_key: MakeApiKey) -> dict[str, str]:
    save(QUICK)
    return make_api_key(["schedules:read", "schedules:write", "runs:write"])


def body(**changes: Any) -> dict[str, Any]:
    return {"name": "nightly", "workflow": "quick", "cron": "0 2 * * *", **changes}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Europe/Nowhere"}, "timezone"),
        ({"workflow": "no_such_flow"}, "workflow"),
        ({"inputs": {"n": "three"}}, "inputs.n"),
        ({"cron": None, "every": 0}, "every"),
        ({"every": 60}, "every"),  # both
        ({"cron": None}, "cron"),  # neither
        ({"overlap": "sometimes"}, "overlap"),
        ({"catchup": "most"}, "catchup"),
        ({"name": "Bad Name"}, "name"),
        (
            {"start_at": "2026-12-05T00:00:00+00:00", "end_at": "2026-12-04T00:00:00+00:00"},
            "end_at",
        ),
    ],
)
def test_bad_schedules_are_400_naming_the_field(
    client: FlaskClient, headers: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = client.post(URL, json=body(**changes), headers=headers)
    assert response.status_code == 400, response.json
    assert field in response.json["error"]["fields"], response.json


def test_create_read_patch_pause_resume_upcoming_delete(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    created = client.post(
        URL, json=body(timezone="Europe/Berlin", inputs={"n": 1}), headers=headers
    )
    assert created.status_code == 201, created.json
    assert created.headers["Location"] == f"{URL}/nightly"
    schedule = created.json
    assert schedule["overlap"] == "skip" and schedule["catchup"] == "all"
    assert schedule["next_fire_at"] and schedule["source"] == "api"
    assert client.post(URL, json=body(), headers=headers).status_code == 409
    upcoming = client.get(f"{URL}/nightly/upcoming?count=3", headers=headers).json["times"]
    assert len(upcoming) == 3 and all(
        t.endswith(("01:00:00+00:00", "T01:00:00Z")) for t in upcoming
    )
    patched = client.patch(f"{URL}/nightly", json={"every": 30}, headers=headers)
    assert patched.status_code == 200, patched.json
    assert patched.json["cron"] is None and patched.json["every"] == 30
    assert patched.json["timezone"] == "Europe/Berlin" and patched.json["inputs"] == {"n": 1}
    bad = client.patch(f"{URL}/nightly", json={"inputs": {"n": "x"}}, headers=headers)
    assert bad.status_code == 400 and "inputs.n" in bad.json["error"]["fields"]
    assert client.post(f"{URL}/nightly/pause", headers=headers).json["paused"] is True
    resumed = client.post(f"{URL}/nightly/resume", headers=headers).json
    assert resumed["paused"] is False and resumed["next_fire_at"]
    listing = client.get(URL, headers=headers).json
    assert [s["name"] for s in listing["items"]] == ["nightly"]
    assert client.delete(f"{URL}/nightly", headers=headers).status_code == 204
    assert client.get(f"{URL}/nightly", headers=headers).status_code == 404


def test_trigger_starts_a_manual_run_now(client: FlaskClient, headers: dict[str, str]) -> None:
    client.post(URL, json=body(inputs={"n": 2}), headers=headers)
    response = client.post(f"{URL}/nightly/trigger", headers=headers)
    assert response.status_code == 202, response.json
    (run,) = runs_of("nightly")
    assert str(run.id) == response.json["run_id"] and run.inputs == {"n": 2}
    assert run.trigger["manual"] is True and run.trigger["kind"] == "schedule"
    assert client.post(f"{URL}/nope/trigger", headers=headers).status_code == 404


def test_scopes_are_required(client: FlaskClient, make_api_key: MakeApiKey) -> None:
    save(QUICK)
    reader = make_api_key(["schedules:read"])
    assert client.get(URL, headers=reader).status_code == 200
    assert client.post(URL, json=body(), headers=reader).status_code == 403
    assert client.get(URL, headers=make_api_key(["runs:read"])).status_code == 403


def test_a_workflow_declares_its_schedules_and_a_new_version_replaces_them(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    headers = make_api_key(["workflows:write", "schedules:read"])
    flow = {
        **QUICK,
        "name": "declaring",
        "schedules": [{"name": "declared-hourly", "cron": "0 * * * *", "inputs": {"n": 1}}],
    }
    assert client.post("/api/v1/workflows", json=flow, headers=headers).status_code == 201
    stored = client.get(f"{URL}/declared-hourly", headers=headers).json
    assert stored["workflow"] == "declaring" and stored["source"] == "workflow"
    bad = {**flow, "version": 2, "schedules": [{"name": "x", "cron": "0 * * *"}]}
    refused = client.put("/api/v1/workflows/declaring", json=bad, headers=headers)
    assert refused.status_code == 400 and "schedules.0.cron" in refused.json["error"]["fields"]
    v2 = {**flow, "version": 2, "schedules": [{"name": "declared-daily", "every": 86400}]}
    assert client.put("/api/v1/workflows/declaring", json=v2, headers=headers).status_code == 201
    names = [s["name"] for s in client.get(URL, headers=headers).json["items"]]
    assert names == ["declared-daily"]
    dropped = client.delete("/api/v1/workflows/declaring?version=2", headers=headers)
    assert dropped.status_code == 200, dropped.json
    names = [s["name"] for s in client.get(URL, headers=headers).json["items"]]
    assert names == ["declared-hourly"], "the schedules follow the latest version left"
    assert client.delete("/api/v1/workflows/declaring", headers=headers).status_code == 200
    assert client.get(URL, headers=headers).json["total"] == 0


@pytest.fixture
def live_api(settings: Settings, committed_db: None) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def test_cli_adds_lists_triggers_pauses_and_deletes(live_api: str, tmp_path: Path) -> None:
    """In-process through click (each subprocess costs ~2 s); one subprocess checks the
    one-line error and exit code of the real entry point."""
    save(QUICK)
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=["admin"])
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": key}
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main_group, list(args), env=env)

    added = cli(
        "schedules", "add", "tz-report", "--workflow", "quick", "--cron", "30 9 * * 1-5",
        "--tz", "America/New_York", "--inputs", '{"n": 4}', "--overlap", "queue",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "schedule tz-report created" in added.output
    listing = json.loads(cli("schedules", "list", "--json").output)
    assert listing["items"][0]["overlap"] == "queue"
    assert listing["items"][0]["timezone"] == "America/New_York"
    assert "tz-report" in cli("schedules", "list").output
    upcoming = cli("schedules", "upcoming", "tz-report", "--count", "2")
    assert upcoming.exit_code == 0 and len(upcoming.output.split()) == 2
    assert all(t.endswith("13:30:00+00:00") or t.endswith("14:30:00+00:00")
               for t in upcoming.output.split())  # fmt: skip
    triggered = cli("schedules", "trigger", "tz-report")
    assert triggered.exit_code == 0 and "started by schedule tz-report" in triggered.output
    runs = json.loads(cli("runs", "list", "--json").output)["items"]
    assert runs[0]["trigger"]["schedule"] == "tz-report" and runs[0]["inputs"] == {"n": 4}
    assert "paused" in cli("schedules", "pause", "tz-report").output
    assert "resumed" in cli("schedules", "resume", "tz-report").output
    both = cli(
        "schedules", "add", "x", "--workflow", "quick", "--cron", "* * * * *", "--every", "5"
    )
    assert both.exit_code == 2 and "exactly one" in both.output
    assert cli("schedules", "delete", "tz-report").exit_code == 0
    gone = cli("schedules", "delete", "tz-report")
    assert gone.exit_code != 0 and "not found" in str(gone.exception)
    bad = agent33(
        ["schedules", "add", "x", "--workflow", "quick", "--cron", "0 0 * *"], tmp_path, **env
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "cron" in bad.stderr and "\n" not in bad.stderr.strip()


@pytest.mark.usefixtures("committed_db")
def test_serve_stores_the_schedules_shipped_workflow_files_declare(
    settings: Settings, tmp_path: Path
) -> None:
    from agent33.automation.schedule_store import get_schedule
    from agent33.cli.serve import prepare_database

    definitions = tmp_path / "definitions"
    (definitions / "workflows").mkdir(parents=True)
    (definitions / "workflows" / "nightly_report.yaml").write_text(
        "name: nightly_report\n"
        "inputs: {type: object, properties: {days: {type: integer}}}\n"
        "steps: [{id: report, action: transform, with: {days: '{{ inputs.days }}'}}]\n"
        "schedules:\n"
        "  - {name: nightly-report, cron: '0 3 * * *', timezone: Europe/Berlin, "
        "inputs: {days: 1}}\n"
    )
    prepare_database(settings.replace(definitions_dir=definitions))
    with session_scope() as session:
        schedule = get_schedule(session=session, name="nightly-report")
        assert (schedule.workflow, schedule.source) == ("nightly_report", "workflow")
        assert schedule.next_fire_at is not None
        assert schedule.next_fire_at.astimezone(dt.UTC).hour in (1, 2)  # 03:00 in Berlin

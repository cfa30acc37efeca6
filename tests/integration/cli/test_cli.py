"""The `agent33` command line against the real database and a real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.registry import sync_directory
from agent33.embedded import free_port
from agent33.engine.validation import validate_workflow
from agent33.security.api_keys import authenticate_api_key, create_api_key
from web import create_app

ROOT = Path(__file__).resolve().parents[3]


def agent33(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "agent33.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_init_scaffolds_a_valid_workflow_then_refuses_to_overwrite(tmp_path: Path) -> None:
    created = agent33(["init", "my_flow", "--kind", "workflow"], tmp_path)
    assert created.returncode == 0, created.stderr
    path = tmp_path / "definitions" / "workflows" / "my_flow.yaml"
    assert path.exists()
    valid = agent33(["workflows", "validate", str(path)], tmp_path)
    assert valid.returncode == 0 and "ok" in valid.stdout
    again = agent33(["init", "my_flow", "--kind", "workflow"], tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    agent = agent33(["init", "helper", "--kind", "agent"], tmp_path)
    assert agent.returncode == 0 and (tmp_path / "definitions/agents/helper.yaml").exists()


def test_invalid_definition_is_one_line_naming_file_and_step(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsteps:\n  - {id: a, action: transform, depends_on: [zz]}\n")
    result = agent33(["workflows", "validate", str(path)], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and str(path) in line and "'a'" in line and "zz" in line


def test_bad_inputs_json_is_a_usage_error(tmp_path: Path) -> None:
    result = agent33(["run", "demo_greeting", "--inputs", "{not json"], tmp_path)
    assert result.returncode == 2
    assert "--inputs" in result.stderr and "Traceback" not in result.stderr


def test_status_without_api_fails_clearly(tmp_path: Path) -> None:
    result = agent33(["status"], tmp_path, AGENT33_API_URL="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach the API" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.usefixtures("committed_db")
def test_keys_and_users_are_created_in_the_database(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url
    result = agent33(
        ["keys", "create", "ci", "--scopes", "runs:read", "--json"],
        tmp_path,
        DATABASE_URL=settings.database_url,
    )
    assert result.returncode == 0, result.stderr
    raw = json.loads(result.stdout)["key"]
    with session_scope() as session:
        assert authenticate_api_key(session=session, raw=raw).scopes == ["runs:read"]
    bad = agent33(
        ["keys", "create", "x", "--scopes", "runs:fly"],
        tmp_path,
        DATABASE_URL=settings.database_url,
    )
    assert bad.returncode == 1 and "runs:fly" in bad.stderr
    user = agent33(
        ["users", "create", "ada", "--password", "correct-horse", "--scopes", "runs:read"],
        tmp_path,
        DATABASE_URL=settings.database_url,
    )
    assert user.returncode == 0, user.stderr
    short = agent33(
        ["users", "create", "bob", "--password", "short"],
        tmp_path,
        DATABASE_URL=settings.database_url,
    )
    assert short.returncode == 2 and "8 characters" in short.stderr
    current = agent33(["db", "current"], tmp_path, DATABASE_URL=settings.database_url)
    assert current.returncode == 0 and current.stdout.strip()


@pytest.fixture
def live_api(settings: Settings, committed_db: None, celery_worker: object) -> Iterator[str]:
    """The real Flask app on a real socket (threaded werkzeug), with a real worker behind it."""
    with session_scope() as session:
        sync_directory(
            session=session, directory=settings.definitions_dir, validator=validate_workflow
        )
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def test_run_wait_shows_steps_and_outputs(live_api: str, tmp_path: Path) -> None:
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=["runs:read", "runs:write"])
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": key}
    result = agent33(
        ["run", "demo_greeting", "--inputs", '{"name": "grace"}', "--wait"], tmp_path, **env
    )
    assert result.returncode == 0, result.stderr
    for step in ("normalise", "greet", "summarise"):
        assert step in result.stdout
    assert '"greeting": "Hello, Grace!"' in result.stdout
    listing = agent33(["runs", "list", "--json"], tmp_path, **env)
    assert json.loads(listing.stdout)["total"] == 1
    refused = agent33(["run", "demo_greeting", "--inputs", '{"name": ""}'], tmp_path, **env)
    assert refused.returncode == 1 and "inputs.name" in refused.stderr


def _key(*scopes: str) -> str:
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=list(scopes))
    return key


def test_init_then_run_says_how_to_push_and_run_push_works(live_api: str, tmp_path: Path) -> None:
    created = agent33(["init", "my-flow", "--kind", "workflow"], tmp_path)
    assert created.returncode == 0, created.stderr
    assert "agent33 workflows push definitions/workflows/my-flow.yaml" in created.stdout
    assert """agent33 run my-flow --inputs '{"name": "ada"}' --wait""" in created.stdout
    key = _key("runs:read", "runs:write", "workflows:read", "workflows:write")
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": key}
    inputs = ["--inputs", '{"name": " ada "}', "--wait"]
    missing = agent33(["run", "my-flow", *inputs], tmp_path, **env)
    assert missing.returncode == 1
    line = missing.stderr.strip()
    assert "\n" not in line and "workflows push definitions/workflows/my-flow.yaml" in line
    assert "--push" in line
    pushed = agent33(["run", "my-flow", "--push", *inputs], tmp_path, **env)
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed (my-flow v1)" in pushed.stdout
    assert '"message": "Hello, ada!"' in pushed.stdout
    again = agent33(["run", "my-flow", *inputs], tmp_path, **env)  # stored now: no push needed
    assert again.returncode == 0, again.stderr


def test_agents_push_list_show_delete(live_api: str, tmp_path: Path) -> None:
    created = agent33(["init", "helper", "--kind", "agent"], tmp_path)
    assert "agent33 agents push definitions/agents/helper.yaml" in created.stdout
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": _key("agents:read", "agents:write")}
    path = "definitions/agents/helper.yaml"
    pushed = agent33(["agents", "push", path], tmp_path, **env)
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed (helper v1)" in pushed.stdout
    listed = agent33(["agents", "list", "--json"], tmp_path, **env)
    assert "helper" in {a["name"] for a in json.loads(listed.stdout)}
    shown = agent33(["agents", "show", "helper"], tmp_path, **env)
    assert shown.returncode == 0 and "system_prompt:" in shown.stdout
    broken = tmp_path / "definitions/agents/broken.yaml"
    broken.write_text("name: broken\nversion: 1\n")
    refused = agent33(["agents", "push", str(broken)], tmp_path, **env)
    assert refused.returncode == 1 and "model" in refused.stderr
    deleted = agent33(["agents", "delete", "helper"], tmp_path, **env)
    assert deleted.returncode == 0, deleted.stderr
    gone = agent33(["agents", "show", "helper"], tmp_path, **env)
    assert gone.returncode == 1 and "Traceback" not in gone.stderr


def test_small_things_read_well(live_api: str, tmp_path: Path) -> None:
    """Valid choices listed, UUIDs checked, 404s in the JSON error shape, errors as text,
    a status table of readable width with /health's reasons in words."""
    key = _key("runs:read", "runs:write", "workflows:read", "workflows:write")
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": key}
    bogus = agent33(["runs", "list", "--state", "bogus"], tmp_path, **env)
    assert bogus.returncode == 2
    assert all(s in bogus.stderr for s in ("pending", "running", "succeeded", "cancelled"))
    not_uuid = agent33(["runs", "show", "not-a-uuid"], tmp_path, **env)
    assert not_uuid.returncode == 2 and "not-a-uuid" in not_uuid.stderr
    response = requests.get(f"{live_api}/api/v1/runs/not-a-uuid", headers={"X-API-Key": key})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "/api/v1/runs/not-a-uuid" in error["message"]

    flow = tmp_path / "definitions" / "workflows" / "breaks.yaml"
    flow.parent.mkdir(parents=True)
    steps = "steps:\n  - {id: boom, action: run_command, with: {argv: ['false']}}\n"
    flow.write_text(f"name: breaks\nversion: 1\n{steps}")
    failed = agent33(["run", "breaks", "--push", "--wait"], tmp_path, **env)
    assert failed.returncode == 1
    assert "step 'boom': command exited with 1" in failed.stderr and "{'" not in failed.stderr
    run_id = next(line for line in failed.stdout.splitlines() if line.startswith("run ")).split()[1]
    shown = agent33(["runs", "show", run_id], tmp_path, **env)
    assert "command exited with 1" in shown.stdout and "{'" not in shown.stdout

    status = agent33(["status"], tmp_path, **env)
    assert max(len(line) for line in status.stdout.splitlines()) < 140, status.stdout
    assert "connection refused at 127.0.0.1:9" in status.stdout
    full = agent33(["status", "--json"], tmp_path, **env)
    model = json.loads(full.stdout)["services"]["model"]["error"]
    assert "ConnectionError" not in model and "connection refused" in model


@pytest.mark.observability
def test_runs_lineage_and_alerts_list(live_api: str, tmp_path: Path) -> None:
    env = {"AGENT33_API_URL": live_api, "AGENT33_API_KEY": _key("runs:read", "runs:write")}
    ran = agent33(
        ["run", "demo_greeting", "--inputs", '{"name": "ada"}', "--wait"], tmp_path, **env
    )
    assert ran.returncode == 0, ran.stderr
    run_id = next(line for line in ran.stdout.splitlines() if line.startswith("run ")).split()[1]
    shown = agent33(["runs", "lineage", run_id], tmp_path, **env)
    assert shown.returncode == 0, shown.stderr
    assert "step:normalise" in shown.stdout and "steps.normalise.output" in shown.stdout
    graph = json.loads(agent33(["runs", "lineage", run_id, "--json"], tmp_path, **env).stdout)
    assert {"input:name", "step:greet"} <= {node["id"] for node in graph["nodes"]}
    missing = agent33(["runs", "lineage", "6b1f0c5e-0000-4000-8000-000000000000"], tmp_path, **env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    listed = agent33(["alerts", "list"], tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[2] for line in listed.stdout.splitlines()[1:]}
    assert rows["dead_letters"] == "ok" and rows["failing_runs"] == "ok"

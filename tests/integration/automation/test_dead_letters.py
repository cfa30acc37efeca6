"""The dead-letter queue: a delivery that spends its attempts, and a step the reaper gives up
on, are kept; the CLI and the API list, show, replay and purge them."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import DeadLetter, WebhookDelivery
from agent33.embedded import free_port
from agent33.engine import reaper, service, store
from agent33.engine.states import StepState
from agent33.observability import metrics
from agent33.security.api_keys import create_api_key
from tasks.app import current_settings, settings_swapped
from tests.integration.automation.receiver import Script, receiver, verify
from tests.integration.automation.test_webhooks_out import OK_FLOW, subscribe
from tests.integration.cli.test_cli import agent33
from tests.integration.engine.helpers import save, start, wait_for
from web import create_app

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db", "celery_worker")]


@pytest.fixture
def three_attempts(settings: Settings) -> Iterator[Settings]:
    with settings_swapped(settings.replace(webhook_retry_base=0.05, webhook_max_attempts=3)) as own:
        yield own


@pytest.fixture
def live_api(three_attempts: Settings) -> Iterator[dict[str, str]]:
    """The real app on a socket (the CLI talks HTTP), and an env with a key for the CLI."""
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(three_attempts), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with session_scope() as session:
        _, key = create_api_key(
            session=session, name="cli", scopes=["deadletters:read", "deadletters:write"]
        )
    try:
        yield {"AGENT33_API_URL": f"http://127.0.0.1:{port}", "AGENT33_API_KEY": key}
    finally:
        server.shutdown()


def _dead_letters() -> list[DeadLetter]:
    with session_scope() as session:
        return list(session.scalars(select(DeadLetter)))


def _wait_dead(timeout: float = 20.0) -> DeadLetter:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        letters = _dead_letters()
        if letters:
            return letters[0]
        time.sleep(0.05)
    raise AssertionError("no dead letter")


def test_an_undeliverable_webhook_is_dead_lettered_then_replayed_with_the_cli(
    client: FlaskClient,
    admin_headers: dict[str, str],
    live_api: dict[str, str],
    tmp_path: Path,
) -> None:
    script = Script(broken=True, status=503)
    with receiver(script) as url:
        hook = subscribe(client, admin_headers, url=url, events=["run.succeeded"])
        wait_for(start(OK_FLOW))
        letter = _wait_dead()
        assert [r.status for r in script.seen] == [503] * 3
        assert (letter.kind, letter.attempts) == ("webhook", 3)
        assert letter.last_error == "HTTP 503 Service Unavailable"
        assert letter.payload["body"]["type"] == "run.succeeded"
        listing = agent33(["deadletters", "list", "--json"], tmp_path, **live_api)
        assert listing.returncode == 0, listing.stderr
        assert [d["id"] for d in json.loads(listing.stdout)["items"]] == [str(letter.id)]
        shown = agent33(["deadletters", "show", str(letter.id)], tmp_path, **live_api)
        assert json.loads(shown.stdout)["payload"]["url"] == url

        script.broken = False  # the receiver is fixed
        replayed = agent33(["deadletters", "replay", str(letter.id)], tmp_path, **live_api)
        assert replayed.returncode == 0, replayed.stderr
        [ok] = script.wait_ok()
    assert len({r.headers["webhook-id"] for r in script.seen}) == 1
    verify(hook["secret"], ok)
    with session_scope() as session:
        [row] = session.scalars(select(WebhookDelivery))
        assert (row.state, row.attempts) == ("delivered", 1)
    [after] = _dead_letters()
    assert after.replayed_at is not None
    purged = agent33(["deadletters", "purge", "--kind", "webhook", "--yes"], tmp_path, **live_api)
    assert purged.returncode == 0 and "purged 1 dead letter" in purged.stdout
    assert _dead_letters() == []
    missing = agent33(["deadletters", "replay", str(letter.id)], tmp_path, **live_api)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_a_step_the_reaper_gives_up_on_is_dead_lettered_and_replay_resumes_its_run(
    client: FlaskClient, admin_headers: dict[str, str], settings: Settings
) -> None:
    save(
        {
            "name": "lost_step",
            "inputs": {"type": "object"},
            "steps": [{"id": "a", "action": "transform", "with": {"value": 1}}],
        }
    )
    with session_scope() as session:
        run, _, _ = service.start_run(
            session=session, settings=current_settings(), workflow_name="lost_step", inputs={}
        )
        step = run.steps[0]
        store.set_step_state(session=session, step=step, target=StepState.RUNNING)
        step.lease_expires_at = store.lease_deadline(1)
        step.deliveries = settings.max_deliveries
        step.worker = "gone-host:1"
        run_id = run.id
    later = store.lease_deadline(0) + dt.timedelta(hours=2)
    counted = metrics.DEAD_LETTERS.labels("step")._value.get()  # noqa: SLF001 - this process
    assert reaper.reap(settings, now=later).failed == 1
    assert metrics.DEAD_LETTERS.labels("step")._value.get() == counted + 1  # noqa: SLF001
    assert wait_for(run_id).state == "failed"
    [letter] = _dead_letters()
    assert (letter.kind, letter.run_id, letter.payload["step_id"]) == ("step", run_id, "a")
    assert "WorkerLost" in letter.payload["reason"] and "gone-host:1" in (letter.last_error or "")

    kinds: dict[str, Any] = {"kind": "step"}
    page = client.get("/api/v1/deadletters", query_string=kinds, headers=admin_headers)
    assert page.status_code == 200 and page.get_json()["total"] == 1
    bad = client.get("/api/v1/deadletters", query_string={"kind": "x"}, headers=admin_headers)
    assert bad.status_code == 400 and "kind" in bad.get_json()["error"]["fields"]
    replayed = client.post(f"/api/v1/deadletters/{letter.id}/replay", headers=admin_headers)
    assert replayed.status_code == 202, replayed.get_json()
    assert wait_for(run_id).state == "succeeded"
    again = client.post(f"/api/v1/deadletters/{letter.id}/replay", headers=admin_headers)
    assert again.status_code == 409  # the run is no longer failed
    purged = client.delete(f"/api/v1/deadletters/{letter.id}", headers=admin_headers)
    assert purged.status_code == 204
    assert _dead_letters() == []


def test_webhooks_cli_adds_lists_and_removes(live_api: dict[str, str], tmp_path: Path) -> None:
    with session_scope() as session:
        _, key = create_api_key(
            session=session, name="hooks", scopes=["webhooks:read", "webhooks:write"]
        )
    env = {**live_api, "AGENT33_API_KEY": key}
    url = "http://127.0.0.1:9/hook"
    added = agent33(["webhooks", "add", url, "--events", "run.failed,step.failed"], tmp_path, **env)
    assert added.returncode == 0, added.stderr
    assert "secret (shown once): whsec_" in added.stdout
    listing = agent33(["webhooks", "list", "--json"], tmp_path, **env)
    [hook] = json.loads(listing.stdout)["items"]
    assert (hook["url"], hook["events"]) == (url, ["run.failed", "step.failed"])
    bad = agent33(["webhooks", "add", url, "--events", "run.exploded"], tmp_path, **env)
    assert bad.returncode == 1 and "events" in bad.stderr and len(bad.stderr.splitlines()) == 1
    removed = agent33(["webhooks", "remove", hook["id"]], tmp_path, **env)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(agent33(["webhooks", "list", "--json"], tmp_path, **env).stdout)["total"] == 0

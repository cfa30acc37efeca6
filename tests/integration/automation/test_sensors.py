"""Sensors through the real API and direct beat ticks (the beat process is tested in e2e).

A tick is the body of `agent33.maintenance.poll_sensors`; calling it directly makes the number of
checks exact. What a second beat sees is reproduced by a tick with the sensor's saved state
wiped: the run key alone must keep the run single.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from agent33.automation import sensor_tick
from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Sensor
from agent33.security.api_keys import create_api_key
from tests.integration.automation.helpers import ON_FILE, runs_by
from tests.integration.engine.helpers import save, wait_for
from web import create_app

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


@pytest.fixture
def own(settings: Settings, root: Path) -> Settings:
    return settings.replace(file_roots=(root,))


@pytest.fixture
def api(own: Settings, committed_db: None, celery_worker: object) -> FlaskClient:
    """The app on the roots above, publishing to the suite's worker."""
    app: Flask = create_app(own)
    save(ON_FILE)
    return app.test_client()


def _key(scopes: list[str]) -> str:
    with session_scope() as session:
        _, raw = create_api_key(session=session, name="-".join(scopes), scopes=scopes)
    return raw


@pytest.fixture
def headers(api: FlaskClient) -> dict[str, str]:
    return {"X-API-Key": _key(["sensors:read", "sensors:write", "events:write"])}


def inbox_sensor(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "inbox",
        "kind": "file_change",
        "workflow": "on_file",
        "directory": str(root / "inbox"),
        "glob": "*.txt",
        "debounce": 0.3,
        "inputs": {"path": "{{ event.path }}", "change": "{{ event.type }}"},
        **extra,
    }


def create(api: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v1/sensors", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def forget_state(name: str) -> None:
    """What a second beat that has not seen the last tick's commit would start from."""
    with session_scope() as session:
        session.execute(
            update(Sensor).where(Sensor.name == name).values(state={}, next_check_at=None)
        )


def test_a_dropped_file_starts_exactly_one_run(
    api: FlaskClient, headers: dict[str, str], own: Settings, root: Path
) -> None:
    create(api, headers, inbox_sensor(root))
    assert sensor_tick.tick(own).fired == 0
    (root / "inbox" / "skip.log").write_text("not watched")
    dropped = root / "inbox" / "report.txt"
    dropped.write_text("quarterly numbers")
    assert sensor_tick.tick(own).fired == 0  # still inside the debounce window
    time.sleep(0.4)
    assert sensor_tick.tick(own).fired == 1
    for _ in range(3):
        assert sensor_tick.tick(own).fired == 0
    forget_state("inbox")
    assert sensor_tick.tick(own).fired == 0  # same path, mtime and size: the same run key

    [run] = runs_by("inbox")
    assert run.inputs == {"path": str(dropped), "change": "created"}
    assert run.trigger is not None and run.trigger["kind"] == "sensor"
    assert run.trigger["event"]["name"] == "report.txt"

    dropped.write_text("quarterly numbers, revised")
    old = time.time() - 5
    os.utime(dropped, (old, old))
    assert sensor_tick.tick(own).fired == 1
    assert [r.inputs["change"] for r in runs_by("inbox")] == ["created", "modified"]

    shown = api.get("/api/v1/sensors/inbox", headers=headers).get_json()
    assert shown["triggers"] == 2 and shown["checks"] == 8
    assert shown["last_run_id"] == str(runs_by("inbox")[-1].id)
    assert shown["last_error"] is None and shown["last_trigger_at"]


def test_two_ticks_at_once_start_one_run(
    api: FlaskClient, headers: dict[str, str], own: Settings, root: Path
) -> None:
    create(api, headers, inbox_sensor(root, debounce=0))
    for name in ("a.txt", "b.txt"):
        (root / "inbox" / name).write_text(name)
    barrier = threading.Barrier(4)
    fired: list[int] = []

    def beat() -> None:
        barrier.wait()
        for _ in range(3):
            fired.append(sensor_tick.tick(own).fired)
            forget_state("inbox")

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(fired) == 2
    assert sorted(r.inputs["path"].rsplit("/", 1)[1] for r in runs_by("inbox")) == [
        "a.txt",
        "b.txt",
    ]


def test_a_stale_file_fires_once_per_staleness_episode(
    api: FlaskClient, headers: dict[str, str], own: Settings, root: Path
) -> None:
    feed = root / "feed.csv"
    feed.write_text("a,b\n")
    body = {
        "name": "feed-fresh",
        "kind": "freshness",
        "workflow": "on_file",
        "path": str(feed),
        "max_age": 60,
        "inputs": {"path": "{{ event.source }}", "change": "{{ event.type }}"},
    }
    create(api, headers, body)
    assert sensor_tick.tick(own).fired == 0  # fresh
    old = time.time() - 120
    os.utime(feed, (old, old))
    assert sensor_tick.tick(own).fired == 1
    for _ in range(3):
        assert sensor_tick.tick(own).fired == 0
    forget_state("feed-fresh")
    assert sensor_tick.tick(own).fired == 0  # the same episode: the same run key
    [run] = runs_by("feed-fresh")
    assert run.inputs == {"path": str(feed), "change": "stale"}

    feed.touch()  # fresh again: the episode is over
    assert sensor_tick.tick(own).fired == 0
    older = time.time() - 300
    os.utime(feed, (older, older))
    assert sensor_tick.tick(own).fired == 1
    assert len(runs_by("feed-fresh")) == 2


def test_an_event_posted_twice_with_one_key_starts_one_run(
    api: FlaskClient, headers: dict[str, str]
) -> None:
    create(
        api,
        headers,
        {
            "name": "uploads",
            "kind": "event",
            "event": "upload",
            "workflow": "on_file",
            "inputs": {"path": "{{ event.payload.path }}", "change": "uploaded"},
        },
    )
    url = "/api/v1/events/upload"
    body = {"payload": {"path": "/data/x.csv"}}
    first = api.post(url, json=body, headers={**headers, "Idempotency-Key": "k-1"})
    assert first.status_code == 202, first.get_json()
    [run] = first.get_json()["runs"]
    assert run["sensor"] == "uploads" and run["duplicate"] is False
    assert wait_for(uuid.UUID(run["id"])).state == "succeeded"
    again = api.post(url, json=body, headers={**headers, "Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.get_json()["runs"][0]["id"] == run["id"]
    assert again.get_json()["runs"][0]["duplicate"] is True
    in_body = api.post(url, json={**body, "key": "k-1"}, headers=headers)
    assert in_body.get_json()["runs"][0]["id"] == run["id"]
    assert len(runs_by("uploads")) == 1

    other = api.post(url, json={**body, "key": "k-2"}, headers=headers).get_json()
    assert other["runs"][0]["id"] != run["id"] and len(runs_by("uploads")) == 2
    trigger = runs_by("uploads")[0].trigger
    assert trigger == {"kind": "event", "event": "upload", "key": "k-1", "sensor": "uploads"}

    unknown = api.post("/api/v1/events/nobody-listens", json=body, headers=headers)
    assert unknown.status_code == 404
    bad = api.post(url, json={"payload": {"name": "no path"}}, headers=headers)
    assert bad.status_code == 400 and "payload" in bad.get_json()["error"]["fields"]
    not_object = api.post(url, json={"payload": [1]}, headers=headers)
    assert not_object.status_code == 400 and "payload" in not_object.get_json()["error"]["fields"]
    no_body = api.post(url, headers=headers)
    assert no_body.status_code == 400 and "payload" in no_body.get_json()["error"]["fields"]
    readers = {"X-API-Key": _key(["sensors:read"])}
    assert api.post(url, json=body, headers=readers).status_code == 403
    assert len(runs_by("uploads")) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"workflow": "no_such_flow"}, "workflow"),
        ({"glob": "../*.txt"}, "glob"),
        ({"glob": "/etc/*"}, "glob"),
        ({"directory": "/etc"}, "directory"),
        ({"kind": "sometimes"}, "kind"),
        ({"debounce": -1}, "debounce"),
        ({"inputs": {"path": "{{ event.path ", "change": "x"}}, "inputs.path"),
        ({"url": "http://127.0.0.1/x"}, "url"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_gets_400_naming_the_field(
    api: FlaskClient, headers: dict[str, str], root: Path, change: dict[str, Any], field: str
) -> None:
    response = api.post("/api/v1/sensors", json={**inbox_sensor(root), **change}, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_freshness_needs_one_source_and_an_allowed_url(
    api: FlaskClient, headers: dict[str, str]
) -> None:
    base = {"name": "f", "kind": "freshness", "workflow": "on_file", "max_age": 5}
    none = api.post("/api/v1/sensors", json=base, headers=headers)
    assert none.status_code == 400 and "path" in none.get_json()["error"]["fields"]
    outside = {**base, "url": "https://example.org/feed.xml"}
    refused = api.post("/api/v1/sensors", json=outside, headers=headers)
    assert refused.status_code == 400 and "url" in refused.get_json()["error"]["fields"]
    assert api.post("/api/v1/sensors", json={**base, "path": "x"}).status_code == 401
    duplicate = {**base, "path": "feed.csv"}
    assert api.post("/api/v1/sensors", json=duplicate, headers=headers).status_code == 201
    assert api.post("/api/v1/sensors", json=duplicate, headers=headers).status_code == 409


def test_a_failing_sensor_records_its_error_and_the_others_still_run(
    api: FlaskClient, headers: dict[str, str], own: Settings, root: Path
) -> None:
    create(api, headers, inbox_sensor(root, name="broken", directory=str(root / "missing")))
    create(api, headers, inbox_sensor(root, debounce=0))
    (root / "inbox" / "a.txt").write_text("a")
    result = sensor_tick.tick(own)
    assert (result.checked, result.fired, result.failed) == (2, 1, 1)
    listing = api.get("/api/v1/sensors", headers=headers).get_json()
    by_name = {s["name"]: s for s in listing["items"]}
    assert "does not exist" in by_name["broken"]["last_error"]
    assert by_name["broken"]["last_error_at"] and by_name["broken"]["triggers"] == 0
    assert by_name["inbox"]["last_error"] is None and by_name["inbox"]["triggers"] == 1

    assert api.delete("/api/v1/sensors/broken", headers=headers).status_code == 200
    assert api.get("/api/v1/sensors/broken", headers=headers).status_code == 404
    assert sensor_tick.tick(own).checked == 1


def test_an_interval_spaces_the_checks(
    api: FlaskClient, headers: dict[str, str], own: Settings, root: Path
) -> None:
    create(api, headers, inbox_sensor(root, interval=3600))
    assert sensor_tick.tick(own).checked == 1
    assert sensor_tick.tick(own).checked == 0

"""The wire contract names only what exists: every task name has a task, every route a target."""

from __future__ import annotations

import fnmatch

from celery import Celery

import celeryconfig
from agent33.config import load_settings
from agent33.wire import Queue, TaskName


def _registered() -> set[str]:
    from tasks.app import app

    assert isinstance(app, Celery)
    app.loader.import_default_modules()
    return {name for name in app.tasks if name.startswith("agent33.")}


def test_every_task_name_has_a_task_and_every_task_a_name() -> None:
    assert {name.value for name in TaskName} == _registered()


def test_every_route_reaches_a_task_on_a_known_queue() -> None:
    config = celeryconfig.build_config(load_settings({}))
    registered = _registered()
    for pattern, route in config["task_routes"].items():
        assert fnmatch.filter(registered, pattern), f"route {pattern} matches no task"
        assert route["queue"] in {q.value for q in Queue}
    for entry in config["beat_schedule"].values():
        assert entry["task"] in registered

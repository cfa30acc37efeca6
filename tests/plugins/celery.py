"""One real Celery worker for the session, consuming every queue on the test Redis.

In-process (threads pool) as Celery's own integration suite does; no `task_always_eager`, so
serialisation, routing, acks and the broker are all real. Subprocess workers live in e2e tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from agent33.config import Settings
from agent33.wire import Queue


@pytest.fixture(scope="session")
def celery_app(settings: Settings) -> Celery:
    from tasks.app import configure_app

    app = configure_app(settings)
    # A key prefix of its own: concurrent test sessions on one Redis never take each other's tasks.
    options = dict(app.conf.broker_transport_options)
    options["global_keyprefix"] = f"agent33-test-{uuid.uuid4().hex[:8]}:"
    app.conf.broker_transport_options = options
    app.loader.import_default_modules()
    return app


@pytest.fixture(scope="session")
def celery_worker(celery_app: Celery) -> Iterator[Any]:
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        queues=[q.value for q in Queue],
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        yield worker

"""A real run of the shipped `example_agent` through the API (its model step answered by the
fake Ollama), and readers of the Prometheus text format."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import sync_agents
from tasks.app import settings_swapped
from tests.integration.engine.helpers import wait_for
from web import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextmanager
def api_and_worker(settings: Settings, fake_ollama: Any) -> Iterator[FlaskClient]:
    """An API client and the in-process worker, both pointed at the fake Ollama."""
    own = settings.replace(ollama_base_url=fake_ollama.url)
    with session_scope() as session:
        sync_agents(session=session, directory=own.definitions_dir)
    with settings_swapped(own):
        yield create_app(own).test_client()


def run_example_agent(client: FlaskClient, headers: Mapping[str, str]) -> uuid.UUID:
    """POST the run, wait until it succeeded; its id."""
    response = client.post(
        "/api/v1/workflows/example_agent/runs",
        json={"inputs": {"question": "What is six times seven?"}},
        headers=dict(headers),
    )
    assert response.status_code == 202, response.get_json()
    run_id = uuid.UUID(response.get_json()["id"])
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    return run_id


def parse(text: str) -> Samples:
    """(sample name, labels) -> value, for every sample of an exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """`check()` once it stops raising AssertionError (metrics are recorded just after the
    commit a test sees)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

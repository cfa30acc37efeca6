"""Chat turns whose worker dies: redelivered and answered once, or a clear 503 within seconds.

Real worker subprocesses on the `llm` queue of a private Redis, the API in this process
publishing to it, and the fake Ollama made slow so a turn can be killed mid-answer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import ChatMessage
from tests.fault.harness import Bench, bench
from tests.integration.agents.chat_support import save_agents, sse_events
from tests.plugins.web import MakeApiKey
from web import create_app

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180), pytest.mark.usefixtures("committed_db")]

CHAT_TIMEOUT_S = 90.0  # the client's own bound: every test must answer far before it
CHECK_S = 1.0  # AGENT33_CHAT_WORKER_CHECK for the API under test


@contextmanager
def api_on(made: Bench, fake_url: str, settings: Settings) -> Iterator[FlaskClient]:
    """An API publishing to the bench's Redis; this process's Celery app is put back after."""
    from tasks.app import app as celery_app
    from tasks.app import configure_app

    options = dict(celery_app.conf.broker_transport_options)
    own = made.settings.replace(ollama_base_url=fake_url, chat_worker_check=CHECK_S)
    configure_app(own)
    try:
        flask_app = create_app(own)
        flask_app.config["AGENT33_CHAT_TIMEOUT"] = CHAT_TIMEOUT_S
        yield flask_app.test_client()
    finally:
        configure_app(settings)
        celery_app.conf.broker_transport_options = options


@pytest.fixture
def agent() -> str:
    name = f"survivor-{uuid.uuid4().hex[:6]}"
    save_agents([{"name": name, "model": "llama3.2", "system_prompt": "Be brief."}])
    return name


def _worker(made: Bench, fake_url: str, **env: str) -> Any:
    """A worker on every queue, once it answers the broadcasts the API's checks send."""
    from tasks.app import app

    before = {name for reply in app.control.ping(timeout=0.5) for name in reply}
    process = made.start_worker("chat", concurrency=1, OLLAMA_BASE_URL=fake_url, **env)
    deadline = time.monotonic() + 150  # a loaded CI machine starts workers slowly
    while time.monotonic() < deadline:
        if {name for reply in app.control.ping(timeout=0.5) for name in reply} - before:
            return process
    raise AssertionError("the worker did not start")


def _asked(fake: Any, times: int, timeout: float = 60) -> None:
    """Until the fake model server has received `times` chat requests."""
    deadline = time.monotonic() + timeout
    while sum(1 for path, _ in fake.requests if path == "/api/chat") < times:
        if time.monotonic() > deadline:
            raise AssertionError(f"the model was not asked {times} times")
        time.sleep(0.05)


def _pool_child(worker: Any) -> psutil.Process:
    (child,) = psutil.Process(worker.pid).children()
    return child


def _calling(workers: list[Any], fake: Any) -> Any:
    """The worker whose pool child is connected to the fake model server."""
    port = fake.server.server_address[1]
    for worker in workers:
        for child in psutil.Process(worker.pid).children():
            if any(c.raddr and c.raddr.port == port for c in child.net_connections("tcp")):
                return worker
    raise AssertionError("no worker is calling the model")


def _post(
    client: FlaskClient, agent: str, headers: dict[str, str], *, stream: bool = False
) -> Future[Any]:
    """The chat request, in a thread; a streamed body is read to its end there."""
    pool = ThreadPoolExecutor(1)
    body = {"message": "are you still there?", "agent": agent, "stream": stream}

    def call() -> Any:
        response = client.post("/api/v1/chat", json=body, headers=headers)
        response.get_data()
        return response

    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def _messages(session_id: str) -> list[tuple[str, str]]:
    with session_scope() as session:
        rows = session.query(ChatMessage).filter_by(session_id=uuid.UUID(session_id))
        return [(row.role, row.content) for row in rows.order_by(ChatMessage.id)]


def test_a_turn_whose_pool_child_is_killed_is_answered_once_by_the_respawned_child(
    settings: Settings,
    tmp_path: Path,
    fake_ollama: Any,
    agent: str,
    make_api_key: MakeApiKey,
) -> None:
    headers = make_api_key(["agents:read"])
    fake_ollama.latency = 3.0
    fake_ollama.script(content="killed before it was sent")
    fake_ollama.script(content="still here")
    with bench(settings, tmp_path) as made, api_on(made, fake_ollama.url, settings) as client:
        worker = _worker(made, fake_ollama.url)
        answer = _post(client, agent, headers)
        _asked(fake_ollama, 1)
        _pool_child(worker).kill()
        fake_ollama.latency = 0.0
        response = answer.result(timeout=60)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    _asked(fake_ollama, 2, timeout=0)  # the turn ran again: it was redelivered
    assert body["answer"] in ("killed before it was sent", "still here")
    messages = _messages(body["session_id"])
    assert messages == [("user", "are you still there?"), ("assistant", body["answer"])]


def test_a_streamed_turn_whose_pool_child_is_killed_restarts_and_ends_done(
    settings: Settings,
    tmp_path: Path,
    fake_ollama: Any,
    agent: str,
    make_api_key: MakeApiKey,
) -> None:
    headers = make_api_key(["agents:read"])
    fake_ollama.chunk_delay = 0.5
    fake_ollama.script(content="one two three four five six")
    fake_ollama.script(content="one two three four five six")
    with bench(settings, tmp_path) as made, api_on(made, fake_ollama.url, settings) as client:
        worker = _worker(made, fake_ollama.url)
        answer = _post(client, agent, headers, stream=True)
        _asked(fake_ollama, 1)
        time.sleep(1.2)  # a token or two are out
        _pool_child(worker).kill()
        fake_ollama.chunk_delay = 0.0
        response = answer.result(timeout=60)
    events = sse_events(response.get_data(as_text=True))
    kinds = [kind for kind, _ in events]
    assert "restart" in kinds and kinds[-1] == "done", kinds
    again = kinds.index("restart")
    tokens = "".join(data["delta"] for kind, data in events[again:] if kind == "token")
    done = events[-1][1]
    assert tokens == done["answer"] == "one two three four five six"
    assert _messages(done["session_id"]) == [
        ("user", "are you still there?"),
        ("assistant", "one two three four five six"),
    ]


def test_a_turn_past_its_redelivery_budget_gets_503_worker_lost(
    settings: Settings,
    tmp_path: Path,
    fake_ollama: Any,
    agent: str,
    make_api_key: MakeApiKey,
) -> None:
    headers = make_api_key(["agents:read"])
    fake_ollama.latency = 3.0
    with bench(settings, tmp_path) as made, api_on(made, fake_ollama.url, settings) as client:
        worker = _worker(made, fake_ollama.url, AGENT33_CHAT_REDELIVERIES="0")
        answer = _post(client, agent, headers)
        _asked(fake_ollama, 1)
        _pool_child(worker).kill()
        killed = time.monotonic()
        response = answer.result(timeout=60)
        waited = time.monotonic() - killed
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "worker_lost"
    assert waited < 15, f"the client waited {waited:.1f}s for a turn that could not be answered"
    assert sum(1 for path, _ in fake_ollama.requests if path == "/api/chat") == 1


def test_no_worker_on_the_queue_gets_503_no_worker_within_seconds(
    settings: Settings,
    tmp_path: Path,
    fake_ollama: Any,
    agent: str,
    make_api_key: MakeApiKey,
) -> None:
    headers = make_api_key(["agents:read"])
    with bench(settings, tmp_path) as made, api_on(made, fake_ollama.url, settings) as client:
        started = time.monotonic()
        response = _post(client, agent, headers).result(timeout=60)
        waited = time.monotonic() - started
    assert response.status_code == 503, response.get_json()
    body = response.get_json()["error"]
    assert body["code"] == "no_worker" and "'llm'" in body["message"], body
    assert waited < 2 * CHECK_S + 10, f"the client waited {waited:.1f}s"


def test_a_whole_worker_killed_mid_turn_gets_503_worker_lost_while_others_live(
    settings: Settings,
    tmp_path: Path,
    fake_ollama: Any,
    agent: str,
    make_api_key: MakeApiKey,
) -> None:
    """The broker keeps a dead worker's turn until the visibility timeout (an hour): the API
    sees it neither queued nor held by the live worker, and says so instead of waiting."""
    headers = make_api_key(["agents:read"])
    fake_ollama.latency = 3.0
    with bench(settings, tmp_path) as made, api_on(made, fake_ollama.url, settings) as client:
        workers = [_worker(made, fake_ollama.url), _worker(made, fake_ollama.url)]
        answer = _post(client, agent, headers)
        _asked(fake_ollama, 1)
        made.kill_worker(_calling(workers, fake_ollama))
        killed = time.monotonic()
        response = answer.result(timeout=CHAT_TIMEOUT_S)
        waited = time.monotonic() - killed
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "worker_lost", response.get_json()
    assert waited < 30, f"the client waited {waited:.1f}s of its {CHAT_TIMEOUT_S:g}s"

"""F12-F14: PostgreSQL restarted, crashed and hung under runs in flight.

A private durable PostgreSQL (tests/fault/postgres.py) under real worker processes, a private
Redis and the ledger. Every run must succeed, no step recorded twice; while the database is
away the API answers 503 (never 500, never hanging), and it takes runs again afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.engine import ANSWER_MARGIN_S
from agent33.security.api_keys import create_api_key
from tests.fault.harness import Bench, bench, save_chain
from tests.fault.postgres import FAST, IMMEDIATE, PrivatePostgres, bound_to, private_postgres
from web import create_app
from web import outbox as web_outbox

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]
RUNS = 10
STEPS = 5
OPTIONAL = ("ollama", "workers", "model")


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def own(settings: Settings, pg: PrivatePostgres) -> Iterator[Settings]:
    with bound_to(settings.replace(health_optional=OPTIONAL), pg) as bound:
        yield bound
    if not pg.server.alive():  # a failed test left it down: the next one needs it
        pg.start()


def _api(made: Bench, monkeypatch: pytest.MonkeyPatch) -> tuple[FlaskClient, dict[str, str]]:
    """A client of the API on the private database (publishing to the bench's Redis)."""
    monkeypatch.setattr(web_outbox, "flush_outbox", made.publish)
    with session_scope() as session:
        _, raw = create_api_key(
            session=session, name=f"admin-{uuid.uuid4().hex[:6]}", scopes=["admin"]
        )
    return create_app(made.settings).test_client(), {"X-API-Key": raw}


def _mid_run(made: Bench, name: str) -> None:
    deadline = time.monotonic() + 60
    while sum(made.ledger.counts().values()) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(made.ledger.counts().values()) >= 8, f"{name}: the runs never started"


def _unavailable(client: FlaskClient, headers: dict[str, str], name: str, limit: float) -> None:
    """/health names the database and run creation answers 503, each within `limit` seconds."""
    started = time.monotonic()
    health = client.get("/health")
    took = time.monotonic() - started
    assert health.status_code == 503, health.get_json()
    assert "database" in health.get_json()["down"]
    assert took < limit, f"{name}: /health took {took:.2f}s"
    started = time.monotonic()
    created = client.post(f"/api/v1/workflows/{name}/runs", json={"inputs": {}}, headers=headers)
    took = time.monotonic() - started
    assert created.status_code == 503, (created.status_code, created.get_json())
    assert took < limit + 5, f"{name}: run creation took {took:.2f}s"


def _recovered(made: Bench, client: FlaskClient, headers: dict[str, str], name: str) -> None:
    """Within 15 s of the database's return the API is healthy and takes runs again."""
    deadline = time.monotonic() + 15
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, f"{name}: /health not green 15 s after recovery"
        time.sleep(0.25)
    for _ in range(3):
        created = client.post(
            f"/api/v1/workflows/{name}/runs", json={"inputs": {}}, headers=headers
        )
        assert created.status_code == 202, created.get_json()
        made.run_ids.append(uuid.UUID(created.get_json()["id"]))


def _no_stale_connections(made: Bench, name: str) -> None:
    """A connection the restart killed is never used again (pre-ping drops it): no worker logs
    `InterfaceError` ("connection already closed"), the failure that lasted days elsewhere."""
    for log in made.redis_dir.parent.glob("worker-*.log"):
        assert "InterfaceError" not in log.read_text(errors="replace"), f"{name}: see {log}"


def test_f12_clean_postgres_restart_mid_run(
    own: Settings, pg: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bench(own, tmp_path) as made:
        client, headers = _api(made, monkeypatch)
        save_chain("f12_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f12_chain", RUNS)
        _mid_run(made, "F12")
        pg.stop(FAST)
        _unavailable(client, headers, "f12_chain", limit=own.health_timeout + 0.5)
        time.sleep(2)
        pg.start()
        _recovered(made, client, headers, "f12_chain")
        made.check("F12 PostgreSQL restart (fast)", steps=STEPS)
        _no_stale_connections(made, "F12")


def test_f13_postgres_crash_mid_run(
    own: Settings, pg: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-m immediate`: no checkpoint, crash recovery at start; every commit a worker saw
    survives (fsync and synchronous_commit on), so no step succeeds twice."""
    with bench(own, tmp_path) as made:
        client, headers = _api(made, monkeypatch)
        save_chain("f13_chain", made.ledger, STEPS, ms=30)
        made.start_worker(concurrency=2)
        made.start_runs("f13_chain", RUNS)
        _mid_run(made, "F13")
        pg.stop(IMMEDIATE)
        _unavailable(client, headers, "f13_chain", limit=own.health_timeout + 0.5)
        pg.start()
        _recovered(made, client, headers, "f13_chain")
        made.check("F13 PostgreSQL crash (immediate)", steps=STEPS)
        _no_stale_connections(made, "F13")


def test_f14_postgres_hung_then_resumed(
    settings: Settings, pg: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PostgreSQL process SIGSTOPped for ~8 s: connections open but silent. The API (a
    2 s statement timeout here) answers 503 once its wait for the answer ends, /health within
    its deadline; the runs go on after SIGCONT."""
    quick = settings.replace(health_optional=OPTIONAL, db_statement_timeout=2.0)
    with bound_to(quick, pg) as own, bench(own, tmp_path) as made:
        client, headers = _api(made, monkeypatch)
        save_chain("f14_chain", made.ledger, STEPS)
        made.start_worker(concurrency=2)
        made.start_runs("f14_chain", RUNS)
        _mid_run(made, "F14")
        stopped = pg.pause()
        try:
            paused = time.monotonic()
            created = client.post(
                "/api/v1/workflows/f14_chain/runs", json={"inputs": {}}, headers=headers
            )
            took = time.monotonic() - paused
            assert created.status_code == 503, (created.status_code, created.get_json())
            # The pooled connection's wait (statement timeout + 2 s), then a fresh connection's
            # connect timeout (3 s), then the answer.
            limit = own.db_statement_timeout + ANSWER_MARGIN_S + 3 + 1.5
            assert took < limit, f"F14: run creation took {took:.2f}s with PostgreSQL hung"
            started = time.monotonic()
            health = client.get("/health")
            health_took = time.monotonic() - started
            assert health.status_code == 503, health.get_json()
            assert "database" in health.get_json()["down"]
            assert health_took < own.health_timeout + 0.5, f"F14: /health took {health_took:.2f}s"
            print(
                f"F14: with PostgreSQL hung, run creation answered 503 in {took:.1f} s, "
                f"/health 503 in {health_took * 1000:.0f} ms"
            )
            time.sleep(max(0.0, 8 - (time.monotonic() - paused)))
        finally:
            pg.resume(stopped)
        _recovered(made, client, headers, "f14_chain")
        made.check("F14 PostgreSQL hung 8 s", steps=STEPS)
        _no_stale_connections(made, "F14")

"""Real PostgreSQL and Redis for the suite.

PostgreSQL: AGENT33_TEST_DATABASE_URL (a server URL; a fresh database is created in it) or the
embedded PostgreSQL 18 + pgvector started once per session. Redis: AGENT33_TEST_REDIS_URL, the
machine's Redis at 127.0.0.1:6379 when it answers, else the embedded one. Every test session gets
its own database and its own Redis DB index, so parallel sessions do not collide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import tenacity
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from agent33 import db
from agent33.config import RateSpec, Settings, load_settings
from agent33.db import migrate
from agent33.embedded import ManagedServer, start_postgres, start_redis

SCRUBBED_PREFIXES = ("AGENT33_", "API_", "OLLAMA_", "OPENAI_", "JWT_", "CELERY_")
SCRUBBED_NAMES = ("DATABASE_URL", "REDIS_URL", "ENCRYPTION_KEY")
TEST_REDIS_DB = 9


def _scrub_environment() -> dict[str, str]:
    removed = {}
    for name in list(os.environ):
        if name in SCRUBBED_NAMES or name.startswith(SCRUBBED_PREFIXES):
            if name in ("AGENT33_TEST_DATABASE_URL", "AGENT33_TEST_REDIS_URL"):
                continue
            removed[name] = os.environ.pop(name)
    return removed


@pytest.fixture(scope="session", autouse=True)
def scrubbed_environment() -> Iterator[None]:
    """Tests build Settings explicitly; stray service variables must not leak in."""
    removed = _scrub_environment()
    yield
    os.environ.update(removed)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server URL (maintenance database), real and with pgvector when embedded."""
    external = os.environ.get("AGENT33_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's base temp: every pytest session on the machine resets
    # /tmp/pytest-of-<user> to 0700, which locks the unprivileged PostgreSQL user (as root) out
    # of another session's data directory.
    root = Path(tempfile.mkdtemp(prefix="agent33-test-pg-"))
    server: ManagedServer = start_postgres(root / "data", durable=False)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    name = f"agent33_test_{uuid.uuid4().hex[:10]}"
    admin = make_url(pg_server_url).set(drivername="postgresql", database="postgres")
    admin_dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_server_url).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    migrate.upgrade(rendered)
    yield rendered
    from agent33.db.session import dispose_engine

    dispose_engine()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _session_db(base: str) -> str:
    """The DB index named in AGENT33_TEST_REDIS_URL (parallel sessions pick their own), else 9."""
    head, _, tail = base.rstrip("/").rpartition("/")
    if tail.isdigit() and os.environ.get("AGENT33_TEST_REDIS_URL") and "://" in head:
        return base
    root = head if tail.isdigit() and "://" in head else base.rstrip("/")
    return f"{root}/{TEST_REDIS_DB}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis DB index owned by this test session, flushed before and after."""
    base = os.environ.get("AGENT33_TEST_REDIS_URL")
    server: ManagedServer | None = None
    if not base:
        base = "redis://127.0.0.1:6379/0"
        if not _answers(base):
            server = start_redis(tmp_path_factory.mktemp("redis"), durable=False)
            base = server.url
    url = _session_db(base)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings for the suite, bound to the test database (the process-wide engine too)."""
    built = load_settings({}, dotenv_path=None).replace(
        database_url=database_url,
        redis_url=redis_url,
        var_dir=tmp_path_factory.mktemp("var"),
        definitions_dir=Path(__file__).resolve().parents[2] / "definitions",
        ollama_base_url="http://127.0.0.1:9",
        http_allow_private=True,  # the suite's HTTP steps call local test servers and the API
        # Many tests log in from 127.0.0.1: only the rate-limit tests meter them (own settings).
        login_rate_limit=RateSpec(100_000, 60),
        rate_limit=RateSpec(1_000_000, 60),
        auth_failure_rate_limit=RateSpec(100_000, 60),
    )
    db.configure(built)
    return built


@pytest.fixture
def db_session(settings: Settings) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test."""
    connection = db.get_engine().connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def committed_db(settings: Settings) -> Iterator[None]:
    """For tests whose data other processes/threads must see: really commit, then truncate."""
    yield
    _truncate_all()


@tenacity.retry(
    retry=tenacity.retry_if_exception_type(OperationalError),
    stop=tenacity.stop_after_attempt(10),
    wait=tenacity.wait_random(0.05, 0.3),
    reraise=True,
)
def _truncate_all() -> None:
    """Empty every table; retried because the suite's worker may still be finishing a step of a
    run the test started (its row locks meet TRUNCATE's exclusive locks: a deadlock or a wait)."""
    tables = ", ".join(f'"{t.name}"' for t in reversed(db.Base.metadata.sorted_tables))
    with db.get_engine().begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '2s'"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

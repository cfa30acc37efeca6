"""Engine construction: pre-ping, bounded timeouts, and a fork-safe dispose."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from agent33.config import ConfigError


def normalise_url(url: str) -> str:
    """Use psycopg 3 for every PostgreSQL URL form users paste."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 16, statement_timeout_ms: int = 30_000) -> Engine:
    """A pooled engine that never hangs on a dead server (connect and statement timeouts).

    Up to `2 * pool_size` connections, `pool_size` of them kept: enough for the API's threads
    (serve's gunicorn runs 32 per process), so a burst of requests neither waits for a
    connection nor opens and closes overflow connections (a new PostgreSQL connection is a new
    server process: with 5 kept, a burst of chats spent its time connecting). Connections open
    only when needed, so a one-thread process still holds one."""
    if not url:
        raise ConfigError("DATABASE_URL is not set and no embedded PostgreSQL runs")
    engine = create_engine(
        normalise_url(url),
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )

    @event.listens_for(engine, "connect")
    def _set_timeouts(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cursor.execute("SET lock_timeout = 10000")
        dbapi_connection.commit()

    return engine

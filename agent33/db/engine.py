"""Engine construction: pre-ping, bounded timeouts, and a fork-safe dispose."""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import PQGen
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from agent33.config import ConfigError

RV = TypeVar("RV")
# Past the server's own statement_timeout, how long to wait for its answer (the cancellation
# itself takes a round trip).
ANSWER_MARGIN_S = 2.0
_WAIT_TIMEOUT: type[Exception] = getattr(pg_errors, "_WaitTimeout", TimeoutError)


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection that stops waiting for a silent server after `answer_timeout`.

    A paused or frozen PostgreSQL keeps its sockets open (the kernel still acknowledges what
    is sent), so neither TCP nor `statement_timeout` (enforced by the frozen server itself)
    ends the wait: without a deadline on this side an API request or a pool pre-ping waits
    as long as the server is frozen. The connection is closed on timeout, so the pool drops it.
    """

    answer_timeout: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        limit = timeout if timeout is not None else self.answer_timeout
        try:
            return super().wait(gen, interval=interval, timeout=limit)
        except _WAIT_TIMEOUT:
            if timeout is not None:
                raise  # the caller's own deadline: its caller handles it
            self.close()
            raise psycopg.OperationalError(
                f"PostgreSQL did not answer within {limit:g}s (connection closed)"
            ) from None


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
    only when needed, so a one-thread process still holds one. Every wait for the server's
    answer ends `ANSWER_MARGIN_S` after the statement timeout (`DeadlineConnection`)."""
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
    answer_timeout = statement_timeout_ms / 1000 + ANSWER_MARGIN_S

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
        connection = DeadlineConnection.connect(*cargs, **cparams)
        connection.answer_timeout = answer_timeout
        return connection

    @event.listens_for(engine, "connect")
    def _set_timeouts(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cursor.execute("SET lock_timeout = 10000")
        dbapi_connection.commit()

    return engine

"""A connection stops waiting for a server that does not answer, and the pool recovers.

A frozen PostgreSQL cannot enforce its own statement_timeout; `DeadlineConnection` gives up on
this side. Here the server is merely slow (pg_sleep) with the deadline set below it, which is
the same wait on the socket (tests/fault/test_postgres_faults.py F14 freezes a real server).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc, text

from agent33.config import Settings
from agent33.db.engine import ANSWER_MARGIN_S, DeadlineConnection, make_engine


def test_a_silent_server_is_given_up_on_and_the_pool_recovers(settings: Settings) -> None:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=1, statement_timeout_ms=4000)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, DeadlineConnection)
            assert raw.answer_timeout == 4 + ANSWER_MARGIN_S
            raw.answer_timeout = 0.3
            started = time.monotonic()
            with pytest.raises(exc.OperationalError, match="did not answer within 0.3s"):
                conn.execute(text("SELECT pg_sleep(3)"))
            assert time.monotonic() - started < 1.5
            assert raw.closed
        with engine.connect() as conn:  # the closed connection was dropped, not reused
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert conn.connection.dbapi_connection is not raw
    finally:
        engine.dispose()


def test_an_answer_within_the_deadline_is_waited_for(settings: Settings) -> None:
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=1, statement_timeout_ms=4000)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_sleep(0.5), 7")).one()[1] == 7
    finally:
        engine.dispose()

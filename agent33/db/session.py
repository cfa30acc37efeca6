"""One engine and sessionmaker per process, bound lazily; `session_scope` is the commit boundary."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent33 import eventbus
from agent33.config import ConfigError, Settings
from agent33.db.engine import make_engine
from agent33.observability import metrics

_lock = threading.Lock()
_state: dict[str, object] = {}


def configure(settings: Settings) -> Engine:
    """Bind this process to the settings' database (replacing any earlier binding)."""
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL is not set and no embedded PostgreSQL runs")
    with _lock:
        old = _state.get("engine")
        if isinstance(old, Engine):
            old.dispose()
        engine = make_engine(
            settings.database_url,
            statement_timeout_ms=int(settings.db_statement_timeout * 1000),
        )
        _state["engine"] = engine
        _state["factory"] = sessionmaker(bind=engine, expire_on_commit=False)
        _state["pid"] = os.getpid()
        eventbus.configure(settings.redis_url)  # who records runs also announces them
        return engine


def get_engine() -> Engine:
    engine = _state.get("engine")
    if not isinstance(engine, Engine):
        from agent33.embedded import resolve_settings

        return configure(resolve_settings())
    return engine


def dispose_after_fork() -> None:
    """In a forked child, drop the parent's pooled connections without closing them."""
    engine = _state.get("engine")
    if isinstance(engine, Engine):
        engine.dispose(close=False)


def dispose_engine() -> None:
    """Close this process's pooled connections (if any), e.g. before dropping a database."""
    engine = _state.get("engine")
    if isinstance(engine, Engine):
        engine.dispose()


def _factory() -> sessionmaker[Session]:
    if "factory" not in _state:
        get_engine()
    factory = _state["factory"]
    assert isinstance(factory, sessionmaker)
    return factory


@contextmanager
def session_scope() -> Iterator[Session]:
    """Commit on success, roll back on error, always close; metrics noted in the transaction
    (`metrics.after_commit`) are recorded only once it committed."""
    session = _factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        metrics.discard(session.info)
        raise
    finally:
        session.close()
    metrics.flush(session.info)

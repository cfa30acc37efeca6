"""Alembic environment: URL from agent33 settings (or a passed connection); a transaction each."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from agent33.db import Base
from agent33.db import models as _models  # noqa: F401 - registers every table
from agent33.db.engine import make_engine
from agent33.db.migrate import include_object

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=include_object,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from agent33.embedded import resolve_settings

        url = resolve_settings().database_url or ""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `agent33 db upgrade`")
run_migrations_online()

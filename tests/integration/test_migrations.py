"""Migrations alone change the schema: one head, no drift from the models, reversible."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from agent33.db import Base, migrate
from agent33.db import models as _models  # noqa: F401
from agent33.db.engine import make_engine

VERSIONS = Path(migrate.__file__).resolve().parents[2] / "migrations" / "versions"


@pytest.fixture
def scratch_database(pg_server_url: str) -> Iterator[str]:
    name = f"agent33_mig_{uuid.uuid4().hex[:8]}"
    admin = make_url(pg_server_url).set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_server_url).set(drivername="postgresql+psycopg", database=name)
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_single_head_and_dated_file_names(database_url: str) -> None:
    assert len(migrate.heads(database_url)) == 1
    for path in VERSIONS.glob("*.py"):
        if path.name != "__init__.py":
            assert path.name[:8].isdigit() and path.name.count("_") >= 3, path.name


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"compare_type": True, "include_object": migrate.include_object}
                ),
                Base.metadata,
            )
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)
    head = migrate.current(scratch_database)
    assert head is not None
    migrate.downgrade(scratch_database, "base")
    assert migrate.current(scratch_database) is None
    migrate.upgrade(scratch_database)
    assert migrate.current(scratch_database) == head


SYSTEM_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def database_without_pgvector() -> Iterator[str]:
    """A scratch database on a server without pgvector (the test machines' PostgreSQL 15)."""
    try:
        admin = psycopg.connect(SYSTEM_POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    with admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if row and row[0]:
            pytest.skip("the PostgreSQL at 127.0.0.1:5432 has pgvector")
        name = f"agent33_novec_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_without_pgvector_names_the_missing_extension(
    database_without_pgvector: str,
) -> None:
    with pytest.raises(migrate.MissingExtension, match=r"'vector' \(pgvector\)"):
        migrate.upgrade(database_without_pgvector)
    # The migrations before the memory store are applied; the failed one left nothing behind.
    assert migrate.current(database_without_pgvector) is not None
    engine = make_engine(database_without_pgvector)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT to_regclass('memory_chunks')").scalar() is None
    finally:
        engine.dispose()

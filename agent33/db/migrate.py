"""Alembic driven from code: no alembic.ini, migrations found through the import system."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from agent33.db.models.memory import HNSW_INDEX_PREFIX
from agent33.errors import Agent33Error


class MissingExtension(Agent33Error):
    """The server lacks a PostgreSQL extension a migration needs (pgvector)."""

    code = "missing_extension"


FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s"


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate's filter: the per-dimension HNSW indexes are expression indexes that the
    migrations own (see agent33.db.models.memory) and autogenerate cannot compare."""
    return not (type_ == "index" and (name or "").startswith(HNSW_INDEX_PREFIX))


def alembic_config(database_url: str) -> Config:
    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option("file_template", FILE_TEMPLATE)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def heads(database_url: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())


def current(database_url: str) -> str | None:
    from agent33.db.engine import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()

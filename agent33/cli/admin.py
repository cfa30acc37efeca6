"""`agent33 db|users|keys`: direct database administration (no API needed)."""

from __future__ import annotations

import click

from agent33 import db
from agent33.cli.output import emit_json
from agent33.config import ConfigError
from agent33.db import migrate
from agent33.embedded import resolve_settings


def _database_url() -> str:
    settings = resolve_settings()
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set and no embedded PostgreSQL runs (start `agent33 serve`)"
        )
    db.configure(settings)
    return settings.database_url


def _scopes(raw: str) -> list[str]:
    from agent33.security.scopes import validate_scopes

    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    validate_scopes(scopes)
    return scopes


@click.group("db")
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    url = _database_url()
    migrate.upgrade(url, revision)
    click.echo(f"database at revision {migrate.current(url)}")


@db_group.command("current")
def db_current() -> None:
    """Print the applied revision."""
    click.echo(migrate.current(_database_url()) or "(empty database)")


@click.group("users")
def users_group() -> None:
    """User accounts (for `POST /api/v1/auth/token`)."""


@users_group.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--scopes", default="runs:read,runs:write,workflows:read", show_default=True)
def users_create(username: str, password: str, scopes: str) -> None:
    """Create a user with a password and scopes."""
    from agent33.security.api_keys import create_user

    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    scope_list = _scopes(scopes)
    _database_url()
    with db.session_scope() as session:
        user = create_user(session=session, username=username, password=password, scopes=scope_list)
        user_id = user.id
    click.echo(f"user {username} created ({user_id}) with scopes {', '.join(scope_list)}")


@click.group("keys")
def keys_group() -> None:
    """API keys (sent as `X-API-Key`)."""


@keys_group.command("create")
@click.argument("name")
@click.option("--scopes", default="runs:read,runs:write,workflows:read", show_default=True)
@click.option(
    "--rate-limit",
    default=None,
    help="This key's own limit, N/second|minute|hour (0: none); default AGENT33_RATE_LIMIT.",
)
@click.option("--rate-burst", type=click.IntRange(1, 1_000_000), default=None)
@click.option("--json", "as_json", is_flag=True)
def keys_create(
    name: str, scopes: str, rate_limit: str | None, rate_burst: int | None, as_json: bool
) -> None:
    """Create an API key; it is shown once and stored only as a hash."""
    from agent33.security.api_keys import create_api_key

    scope_list = _scopes(scopes)
    _database_url()
    with db.session_scope() as session:
        key, raw = create_api_key(
            session=session,
            name=name,
            scopes=scope_list,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
        )
        key_id = key.id
    if as_json:
        emit_json({"id": str(key_id), "name": name, "scopes": scope_list, "key": raw})
        return
    click.echo(f"API key {name} ({key_id}), scopes {', '.join(scope_list)}:")
    click.echo(raw)
    click.echo("Store it now: it cannot be shown again.")

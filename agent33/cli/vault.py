"""`agent33 vault set|list|delete|rotate`: secrets straight in the database (no API needed).

A value is read from stdin or a hidden prompt, never from argv, where `ps` and shell history
would keep it. `rotate` re-encrypts every row with the first ENCRYPTION_KEY key, after which
older keys can be dropped from the list.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from agent33 import db
from agent33.cli.output import emit_json, table
from agent33.config import ConfigError
from agent33.embedded import resolve_settings

if TYPE_CHECKING:
    from agent33.security.vault import Vault


def _vault() -> Vault:
    """Bind the database and build the vault from the same settings the worker would use."""
    from agent33.security.vault import vault_for

    settings = resolve_settings()
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set and no embedded PostgreSQL runs (start `agent33 serve`)"
        )
    db.configure(settings)
    return vault_for(settings)


def _read_stdin() -> str:
    value = sys.stdin.read()
    if value.endswith("\n"):
        value = value[:-1]
    return value[:-1] if value.endswith("\r") else value


@click.group("vault")
def vault_group() -> None:
    """Encrypted secrets, referenced from workflows as `{{ secrets.NAME }}`."""


@vault_group.command("set")
@click.argument("name")
@click.option(
    "--value-stdin", is_flag=True, help="Read the value from stdin (a trailing newline is dropped)."
)
def vault_set(name: str, value_stdin: bool) -> None:
    """Create or replace secret NAME (the value comes from stdin or a hidden prompt)."""
    from agent33.security.vault import set_secret

    if value_stdin:
        value = _read_stdin()
    else:
        value = click.prompt("Value", hide_input=True, confirmation_prompt=True)
    vault = _vault()
    with db.session_scope() as session:
        set_secret(session=session, vault=vault, name=name, value=value)
    click.echo(f"secret {name} stored (encrypted)")


@vault_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def vault_list(as_json: bool) -> None:
    """List secret names and timestamps (never values)."""
    from agent33.security.vault import list_secrets

    _vault()
    with db.session_scope() as session:
        rows = [
            {
                "name": row.name,
                "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat(),
                "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None,
            }
            for row in list_secrets(session=session)
        ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no secrets")
        return
    table(
        ("name", "updated", "rotated"),
        [(r["name"], r["updated_at"], r["rotated_at"] or "-") for r in rows],
    )


@vault_group.command("delete")
@click.argument("name")
def vault_delete(name: str) -> None:
    """Delete secret NAME; steps that reference it then fail naming it."""
    from agent33.security.vault import delete_secret

    _vault()
    with db.session_scope() as session:
        delete_secret(session=session, name=name)
    click.echo(f"secret {name} deleted")


@vault_group.command("rotate")
def vault_rotate() -> None:
    """Re-encrypt every secret with the first ENCRYPTION_KEY key."""
    from agent33.security.vault import rotate_all

    vault = _vault()
    with db.session_scope() as session:
        count = rotate_all(session=session, vault=vault)
    click.echo(f"re-encrypted {count} secret{'s' if count != 1 else ''} with the primary key")

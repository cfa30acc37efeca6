"""`agent33 config show|table`: resolved settings (secrets masked) and the README table."""

from __future__ import annotations

from pathlib import Path

import click

from agent33.cli.output import emit_json, table
from agent33.config import masked, settings_table
from agent33.embedded import resolve_settings

TABLE_START = "| Variable | Default | Meaning |"


@click.group("config")
def config_group() -> None:
    """Settings."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True)
def config_show(as_json: bool) -> None:
    """Print the resolved settings with secrets masked."""
    shown = masked(resolve_settings())
    if as_json:
        emit_json(shown)
    else:
        table(["setting", "value"], sorted(shown.items()))


@config_group.command("table")
@click.option(
    "--write",
    "readme",
    type=click.Path(path_type=Path),
    default=None,
    help="Replace the table inside this README instead of printing it.",
)
def config_table(readme: Path | None) -> None:
    """The environment-variable table (generated from the code)."""
    generated = settings_table()
    if readme is None:
        click.echo(generated)
        return
    text = readme.read_text()
    start = text.index(TABLE_START)
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + generated + text[end:])
    click.echo(f"updated {readme}")

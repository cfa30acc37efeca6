"""`agent33 agents list|show|push|delete`: stored agent definitions, like `workflows`."""

from __future__ import annotations

from pathlib import Path

import click

from agent33.cli.client import ApiClient
from agent33.cli.stored import list_stored, push_documents, show_stored
from agent33.definitions.agents import load_agent_file
from agent33.embedded import resolve_settings


@click.group("agents")
def agents_group() -> None:
    """Agent definitions."""


@agents_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def agents_list(as_json: bool) -> None:
    """Agents stored on the server (latest versions)."""
    list_stored("agents", as_json)


@agents_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None)
def agents_show(name: str, version: int | None) -> None:
    """Print a stored agent definition as YAML."""
    show_stored("agents", name, version)


@agents_group.command("push")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def agents_push(paths: tuple[Path, ...]) -> None:
    """Store agent files on the server, all checked locally first so none is half-pushed.

    The server checks again (tools, queues): a scaffold needs no `serve` restart to be used.
    """
    push_documents("agents", [(path, load_agent_file(path)[1]) for path in paths])


@agents_group.command("delete")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Only this version (default: all).")
def agents_delete(name: str, version: int | None) -> None:
    """Delete a stored agent (every version, or one)."""
    params = {"version": version} if version else {}
    ApiClient(resolve_settings()).delete(f"/api/v1/agents/{name}", params=params)
    which = f"v{version}" if version else "all versions"
    click.echo(f"deleted agent {name} ({which})")

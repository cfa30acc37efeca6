"""`agent33 agents list|show|push|delete`: stored agent definitions, like `workflows`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.definitions.agents import load_agent_file
from agent33.embedded import resolve_settings


@click.group("agents")
def agents_group() -> None:
    """Agent definitions."""


@agents_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def agents_list(as_json: bool) -> None:
    """Agents stored on the server (latest versions)."""
    body = ApiClient(resolve_settings()).get("/api/v1/agents")
    items = body["items"] if isinstance(body, dict) else body
    if as_json:
        emit_json(items)
        return
    table(
        ["name", "version", "description"],
        [(a["name"], a["version"], a.get("description", "")) for a in items],
    )


@agents_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None)
def agents_show(name: str, version: int | None) -> None:
    """Print a stored agent definition as YAML."""
    params = {"version": version} if version else {}
    body = ApiClient(resolve_settings()).get(f"/api/v1/agents/{name}", params=params)
    click.echo(yaml.safe_dump(body.get("spec", body), sort_keys=False))


@agents_group.command("push")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def agents_push(paths: tuple[Path, ...]) -> None:
    """Store agent files on the server, all checked locally first so none is half-pushed.

    The server checks again (tools, queues): a scaffold needs no `serve` restart to be used.
    """
    documents = [(path, load_agent_file(path)[1]) for path in paths]
    client = ApiClient(resolve_settings())
    for path, document in documents:
        stored = client.post(
            "/api/v1/agents",
            data=json.dumps(document, default=str),
            headers={"Content-Type": "application/json"},
        )
        click.echo(f"{path}: pushed ({stored['name']} v{stored['version']})")


@agents_group.command("delete")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Only this version (default: all).")
def agents_delete(name: str, version: int | None) -> None:
    """Delete a stored agent (every version, or one)."""
    params = {"version": version} if version else {}
    ApiClient(resolve_settings()).delete(f"/api/v1/agents/{name}", params=params)
    which = f"v{version}" if version else "all versions"
    click.echo(f"deleted agent {name} ({which})")

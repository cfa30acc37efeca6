"""`agent33 workflows list|show|validate|push`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.definitions.loader import load_workflow_file
from agent33.embedded import resolve_settings
from agent33.engine.validation import validate_workflow


@click.group("workflows")
def workflows_group() -> None:
    """Workflow definitions."""


@workflows_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def workflows_validate(paths: tuple[Path, ...]) -> None:
    """Validate definition files (schema, graph, actions, expressions) without a server."""
    for path in paths:
        workflow, _ = load_workflow_file(path)
        validate_workflow(workflow, str(path))
        click.echo(f"{path}: ok ({workflow.name} v{workflow.version}, {len(workflow.steps)} steps)")


@workflows_group.command("push")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def workflows_push(paths: tuple[Path, ...]) -> None:
    """Store definition files on the server, all checked locally first so none is half-pushed."""
    documents = []
    for path in paths:
        workflow, document = load_workflow_file(path)
        validate_workflow(workflow, str(path))
        documents.append((path, document))
    client = ApiClient(resolve_settings())
    for path, document in documents:
        stored = client.post(
            "/api/v1/workflows",
            data=json.dumps(document, default=str),  # YAML dates become strings, as when synced
            headers={"Content-Type": "application/json"},
        )
        click.echo(f"{path}: pushed ({stored['name']} v{stored['version']})")


@workflows_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def workflows_list(as_json: bool) -> None:
    """Workflows stored on the server (latest versions)."""
    body = ApiClient(resolve_settings()).get("/api/v1/workflows")
    items = body["items"] if isinstance(body, dict) else body
    if as_json:
        emit_json(items)
        return
    table(
        ["name", "version", "description"],
        [(w["name"], w["version"], w.get("description", "")) for w in items],
    )


@workflows_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None)
def workflows_show(name: str, version: int | None) -> None:
    """Print a stored workflow definition as YAML."""
    params = {"version": version} if version else {}
    body = ApiClient(resolve_settings()).get(f"/api/v1/workflows/{name}", params=params)
    click.echo(yaml.safe_dump(body.get("spec", body), sort_keys=False))

"""`agent33 workflows list|show|validate|push`."""

from __future__ import annotations

from pathlib import Path

import click

from agent33.cli.stored import list_stored, push_documents, show_stored
from agent33.definitions.loader import load_workflow_file
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
    push_documents("workflows", documents)


@workflows_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def workflows_list(as_json: bool) -> None:
    """Workflows stored on the server (latest versions)."""
    list_stored("workflows", as_json)


@workflows_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None)
def workflows_show(name: str, version: int | None) -> None:
    """Print a stored workflow definition as YAML."""
    show_stored("workflows", name, version)

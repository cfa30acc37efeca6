"""`agent33 init NAME --kind agent|workflow`: write a valid definition to start from."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from agent33.cli.output import fail
from agent33.definitions.loader import load_workflow_file
from agent33.engine.validation import validate_workflow

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")


def workflow_template(name: str) -> dict[str, object]:
    """Takes `{"name": ...}` like the README's first run, so the printed command just works."""
    return {
        "name": name,
        "version": 1,
        "description": f"{name}: describe what this workflow does.",
        "inputs": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "steps": [
            {"id": "clean", "action": "transform", "with": {"name": "{{ inputs.name | trim }}"}},
            {
                "id": "greet",
                "action": "transform",
                "depends_on": ["clean"],
                "with": {"message": "Hello, {{ steps.clean.output.name }}!"},
            },
        ],
        "outputs": {"message": "{{ steps.greet.output.message }}"},
    }


def next_steps(kind: str, name: str, path: Path) -> list[str]:
    """What to type next: a scaffold is only a file until it is pushed to the server."""
    if kind == "workflow":
        return [
            f"  agent33 workflows validate {path}",
            f"  agent33 workflows push {path}",
            f'  agent33 run {name} --inputs \'{{"name": "ada"}}\' --wait',
        ]
    return [f"  agent33 agents push {path}", f'  agent33 chat {name} "hello"']


def agent_template(name: str) -> dict[str, object]:
    return {
        "name": name,
        "version": 1,
        "role": "assistant",
        "description": f"{name}: describe what this agent does.",
        "model": "ollama/llama3.2",
        "system_prompt": "You are a helpful assistant. Answer briefly.",
        "temperature": 0.2,
        "max_tokens": 512,
        "tools": [],
        "memory": {"long_term": {"enabled": False}},
    }


@click.command("init")
@click.argument("name")
@click.option("--kind", type=click.Choice(["agent", "workflow"]), required=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path("definitions"),
    show_default=True,
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_command(name: str, kind: str, directory: Path, force: bool) -> None:
    """Scaffold definitions/<kind>s/NAME.yaml."""
    if not NAME.match(name):
        raise click.BadParameter("use lower-case letters, digits, _ and -", param_hint="NAME")
    path = directory / f"{kind}s" / f"{name}.yaml"
    if path.exists() and not force:
        fail(f"{path} already exists (use --force to overwrite)")
    document = workflow_template(name) if kind == "workflow" else agent_template(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    if kind == "workflow":
        workflow, _ = load_workflow_file(path)
        validate_workflow(workflow, str(path))
    click.echo(f"created {path}; edit it, then (with `agent33 serve` running):")
    for line in next_steps(kind, name, path):
        click.echo(line)

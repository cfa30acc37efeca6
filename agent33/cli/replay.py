"""`agent33 runs replay RUN_ID`: re-execute a run from its recorded calls and print the diff;
`agent33 runs budget RUN_ID`: raise a run's budget."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import clip, emit_json, error_text, fail
from agent33.cli.progress import follow
from agent33.embedded import resolve_settings


def print_diff(result: dict[str, Any]) -> None:
    differences = result["differences"]
    if not differences:
        click.echo("no differences: every step's state and output match the original")
        return
    click.echo(f"{len(differences)} difference(s):")
    for item in differences:
        click.echo(f"  {item['step_id']} {item['field']}:")
        click.echo(f"    - {clip(json.dumps(item['original'], default=str), 160)}")
        click.echo(f"    + {clip(json.dumps(item['replay'], default=str), 160)}")


@click.command("replay")
@click.argument("run_id", type=click.UUID)
@click.option("--strict", is_flag=True, help="Fail a step whose call was not recorded.")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Workflow version.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the diff).")
def runs_replay(
    run_id: uuid.UUID, strict: bool, version: int | None, timeout: float, as_json: bool
) -> None:
    """Re-run RUN_ID with its model and tool calls answered from the recording, then print
    how each step's output differs from the original. Exits 1 when the replay did not
    succeed (with --strict: a call that was not recorded)."""
    client = ApiClient(resolve_settings())
    body: dict[str, Any] = {"strict": strict}
    if version is not None:
        body["version"] = version
    created = client.post(f"/api/v1/runs/{run_id}/replay", json=body)
    replay_id = str(created["id"])
    if not as_json:
        click.echo(f"replay {replay_id} of run {run_id} accepted")
    run = follow(client, replay_id, timeout=timeout, quiet=as_json)
    result = client.get(f"/api/v1/runs/{replay_id}/diff")
    if as_json:
        emit_json(result)
    else:
        click.echo(f"replay {replay_id} {run['state']}")
        print_diff(result)
    if run["state"] != "succeeded":
        fail(f"replay {run['state']}: {error_text(run.get('error') or {})}")


@click.command("budget")
@click.argument("run_id", type=click.UUID)
@click.option("--tokens", type=click.IntRange(min=1), default=None, help="New token limit.")
@click.option(
    "--cost", type=click.FloatRange(min=0, min_open=True), default=None, help="New cost limit."
)
def runs_budget(run_id: uuid.UUID, tokens: int | None, cost: float | None) -> None:
    """Set new limits on RUN_ID's budget; steps paused on it (`on_budget: pause`) run again."""
    if tokens is None and cost is None:
        fail("give --tokens, --cost or both")
    body = {k: v for k, v in {"tokens": tokens, "cost": cost}.items() if v is not None}
    result = ApiClient(resolve_settings()).post(f"/api/v1/runs/{run_id}/budget", json=body)
    click.echo(f"run {result['id']} budget raised; run {result['state']}")

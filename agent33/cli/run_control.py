"""`agent33 runs rerun|pin|unpin|purge`: rerun from a step, keep runs, apply retention now."""

from __future__ import annotations

import uuid
from typing import Any

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, error_text, fail
from agent33.cli.progress import follow
from agent33.cli.runs import parse_inputs, report
from agent33.embedded import resolve_settings


@click.command("rerun")
@click.argument("run_id", type=click.UUID)
@click.option("--from", "from_step", required=True, help="Step to rerun from (e.g. fan[2]).")
@click.option("--inputs", "inputs_raw", default=None, help="JSON object or @file.json.")
@click.option("--wait/--no-wait", default=False, help="Follow step progress until the run ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs_rerun(
    run_id: uuid.UUID,
    from_step: str,
    inputs_raw: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Rerun a finished run from a step, as a new run: earlier steps keep their outputs."""
    body: dict[str, Any] = {"from": from_step}
    if inputs_raw is not None:
        body["inputs"] = parse_inputs(inputs_raw)
    client = ApiClient(resolve_settings())
    created = client.post(f"/api/v1/runs/{run_id}/rerun", json=body)
    if not as_json:
        copied = ", ".join(created["copied"]) or "nothing"
        click.echo(f"run {created['id']} reruns {run_id} from {from_step} (copied: {copied})")
    if not wait:
        if as_json:
            emit_json(created)
        return
    run = follow(client, str(created["id"]), timeout=timeout, quiet=as_json)
    if as_json:
        emit_json(run)
        if run["state"] != "succeeded":
            fail(f"run {run['state']}: {error_text(run.get('error') or {})}")
        return
    report(run)


def _pin(run_id: uuid.UUID, pinned: bool) -> None:
    verb = "pin" if pinned else "unpin"
    result = ApiClient(resolve_settings()).post(f"/api/v1/runs/{run_id}/{verb}")
    click.echo(f"run {result['id']} {'pinned' if result['pinned'] else 'unpinned'}")


@click.command("pin")
@click.argument("run_id", type=click.UUID)
def runs_pin(run_id: uuid.UUID) -> None:
    """Keep a run (and its sub-runs) whatever its age."""
    _pin(run_id, True)


@click.command("unpin")
@click.argument("run_id", type=click.UUID)
def runs_unpin(run_id: uuid.UUID) -> None:
    """Let retention purge a run again once it is old enough."""
    _pin(run_id, False)


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0, min_open=True, max=36500),
    default=None,
    help="Age in days, replacing the AGENT33_RETENTION_* defaults (a workflow's own "
    "`retention.days` still wins).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs_purge(older_than: float | None, dry_run: bool, as_json: bool) -> None:
    """Delete finished runs, chat messages and published outbox rows past their retention
    (pinned runs are kept), in small batches, directly in the database."""
    from agent33 import db
    from agent33.config import ConfigError
    from agent33.engine import retention

    settings = resolve_settings()
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set and no embedded PostgreSQL runs (start `agent33 serve`)"
        )
    db.configure(settings)
    result = retention.purge(settings, older_than=older_than, dry_run=dry_run)
    counts = {
        "runs": result.runs,
        "chat_messages": result.chat_messages,
        "outbox_messages": result.outbox_messages,
        "dry_run": dry_run,
    }
    if as_json:
        emit_json(counts)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result.runs} runs, {result.chat_messages} chat messages, "
        f"{result.outbox_messages} outbox rows"
    )

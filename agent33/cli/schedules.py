"""`agent33 schedules list|add|pause|resume|delete|trigger|upcoming`: through the HTTP API."""

from __future__ import annotations

from typing import Any

import click

from agent33.automation.schedule_spec import CATCHUP_POLICIES, OVERLAP_POLICIES
from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.cli.runs import parse_inputs
from agent33.embedded import resolve_settings

BASE = "/api/v1/schedules"


def _client() -> ApiClient:
    return ApiClient(resolve_settings())


@click.group("schedules")
def schedules_group() -> None:
    """Run workflows on a cron expression or an interval (fired by beat)."""


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def schedules_list(as_json: bool) -> None:
    """List schedules with their timing and next fire time."""
    listing = _client().get(BASE)
    if as_json:
        emit_json(listing)
        return
    rows = [
        (
            s["name"],
            s["workflow"],
            s["cron"] if s["cron"] is not None else f"every {s['every']}s",
            s["timezone"],
            "paused" if s["paused"] else "active",
            s["next_fire_at"] or "-",
        )
        for s in listing["items"]
    ]
    table(["name", "workflow", "when", "timezone", "state", "next fire"], rows)


@schedules_group.command("add")
@click.argument("name")
@click.option("--workflow", required=True, help="The workflow each slot runs.")
@click.option("--cron", default=None, help='5-field cron expression, e.g. "*/5 * * * *".')
@click.option("--tz", "timezone", default="UTC", show_default=True, help="Zone --cron is read in.")
@click.option("--every", type=int, default=None, help="Seconds between slots (instead of --cron).")
@click.option("--inputs", "inputs_raw", default="{}", help="JSON object or @file.json")
@click.option("--overlap", type=click.Choice(OVERLAP_POLICIES), default="skip", show_default=True)
@click.option("--catchup", type=click.Choice(CATCHUP_POLICIES), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def schedules_add(
    name: str,
    workflow: str,
    cron: str | None,
    timezone: str,
    every: int | None,
    inputs_raw: str,
    overlap: str,
    catchup: str,
    as_json: bool,
) -> None:
    """Create schedule NAME running --workflow on --cron (in --tz) or --every SECONDS."""
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron and --every")
    body: dict[str, Any] = {
        "name": name,
        "workflow": workflow,
        "inputs": parse_inputs(inputs_raw),
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "overlap": overlap,
        "catchup": catchup,
    }
    created = _client().post(BASE, json=body)
    if as_json:
        emit_json(created)
        return
    click.echo(f"schedule {created['name']} created; next fire {created['next_fire_at']}")


@schedules_group.command("pause")
@click.argument("name")
def schedules_pause(name: str) -> None:
    """Pause schedule NAME: no slot fires until it is resumed."""
    _client().post(f"{BASE}/{name}/pause")
    click.echo(f"schedule {name} paused")


@schedules_group.command("resume")
@click.argument("name")
def schedules_resume(name: str) -> None:
    """Resume schedule NAME from its next slot (no catch-up of the paused time)."""
    resumed = _client().post(f"{BASE}/{name}/resume")
    click.echo(f"schedule {name} resumed; next fire {resumed['next_fire_at']}")


@schedules_group.command("delete")
@click.argument("name")
def schedules_delete(name: str) -> None:
    """Delete schedule NAME (the runs it started stay)."""
    _client().request("DELETE", f"{BASE}/{name}")
    click.echo(f"schedule {name} deleted")


@schedules_group.command("trigger")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def schedules_trigger(name: str, as_json: bool) -> None:
    """Start one run of schedule NAME now, outside its slots."""
    result = _client().post(f"{BASE}/{name}/trigger")
    if as_json:
        emit_json(result)
        return
    click.echo(f"run {result['run_id']} started by schedule {name}")


@schedules_group.command("upcoming")
@click.argument("name")
@click.option("--count", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def schedules_upcoming(name: str, count: int, as_json: bool) -> None:
    """Show the next fire times of schedule NAME (UTC)."""
    result = _client().get(f"{BASE}/{name}/upcoming", params={"count": count})
    if as_json:
        emit_json(result)
        return
    for moment in result["times"]:
        click.echo(moment)

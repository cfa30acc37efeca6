"""`agent33 alerts list`: the alert rules, their state and last incident, through the API."""

from __future__ import annotations

from typing import Any

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import clip, emit_json, table
from agent33.embedded import resolve_settings


@click.group("alerts")
def alerts_group() -> None:
    """Alert rules evaluated by beat (definitions/alerts/*.yaml, AGENT33_ALERT_RULES)."""


def _incident(incident: dict[str, Any] | None) -> str:
    if not incident:
        return "-"
    when = incident["resolved_at"] or incident["fired_at"]
    verb = "resolved" if incident["resolved_at"] else "firing since"
    return f"#{incident['incident_id']} {verb} {when[:19]}: {incident['message']}"


@alerts_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def alerts_list(as_json: bool) -> None:
    """List the rules with their current state and last incident."""
    listing: dict[str, Any] = ApiClient(resolve_settings()).get("/api/v1/alerts")
    if as_json:
        emit_json(listing)
        return
    if not listing["items"]:
        click.echo("no alert rules (add definitions/alerts/NAME.yaml or AGENT33_ALERT_RULES)")
        return
    table(
        ("rule", "kind", "state", "value", "threshold", "last incident"),
        [
            (
                rule["name"],
                rule["kind"],
                rule["state"],
                "-" if rule["value"] is None else f"{rule['value']:g}",
                f"{rule['threshold']:g}",
                clip(_incident(rule["last_incident"]), 90),
            )
            for rule in listing["items"]
        ],
    )

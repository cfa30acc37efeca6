"""`agent33 webhooks add|list|remove` and `agent33 deadletters list|show|replay|purge`: through
the HTTP API (so deliveries and replays are published by the server that owns the broker)."""

from __future__ import annotations

import json
from typing import Any

import click

from agent33.automation import dead_letters
from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.embedded import resolve_settings

SUBSCRIPTIONS = "/api/v1/webhook-subscriptions"
DEADLETTERS = "/api/v1/deadletters"


def _client() -> ApiClient:
    return ApiClient(resolve_settings())


@click.group("webhooks")
def webhooks_group() -> None:
    """Outbound webhooks: run events POSTed, signed (Standard Webhooks), to your URLs."""


@webhooks_group.command("add")
@click.argument("url")
@click.option(
    "--events",
    required=True,
    help="Comma list: run.succeeded, run.failed, run.cancelled, run.waiting, step.failed, "
    "alert.firing, alert.resolved.",
)
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
def webhooks_add(
    url: str, events: str, workflow: str | None, description: str | None, as_json: bool
) -> None:
    """Subscribe URL; prints the signing secret, shown this once."""
    body = {
        "url": url,
        "events": [event.strip() for event in events.split(",") if event.strip()],
        "workflow": workflow,
        "description": description,
    }
    created: dict[str, Any] = _client().post(SUBSCRIPTIONS, json=body)
    if as_json:
        emit_json(created)
        return
    click.echo(f"webhook {created['id']} -> {created['url']} ({', '.join(created['events'])})")
    click.echo(f"secret (shown once): {created['secret']}")


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(as_json: bool) -> None:
    """List subscriptions."""
    listing: dict[str, Any] = _client().get(SUBSCRIPTIONS)
    if as_json:
        emit_json(listing)
        return
    if not listing["items"]:
        click.echo("no webhooks")
        return
    table(
        ("id", "url", "events", "workflow", "active"),
        [
            (h["id"], h["url"], ",".join(h["events"]), h["workflow"] or "*", h["active"])
            for h in listing["items"]
        ],
    )


@webhooks_group.command("remove")
@click.argument("webhook_id")
def webhooks_remove(webhook_id: str) -> None:
    """Delete subscription WEBHOOK_ID (its secret and deliveries with it)."""
    _client().request("DELETE", f"{SUBSCRIPTIONS}/{webhook_id}")
    click.echo(f"webhook {webhook_id} removed")


@click.group("deadletters")
def deadletters_group() -> None:
    """Messages the system gave up on: webhook deliveries and lost steps."""


@deadletters_group.command("list")
@click.option("--kind", type=click.Choice(dead_letters.KINDS), default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def deadletters_list(kind: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    listing: dict[str, Any] = _client().get(DEADLETTERS, params=params)
    if as_json:
        emit_json(listing)
        return
    if not listing["items"]:
        click.echo("no dead letters")
        return
    table(
        ("id", "kind", "attempts", "created", "replayed", "last error"),
        [
            (
                d["id"],
                d["kind"],
                d["attempts"],
                d["created_at"],
                d["replayed_at"] or "-",
                (d["last_error"] or "")[:60],
            )
            for d in listing["items"]
        ],
    )


@deadletters_group.command("show")
@click.argument("letter_id")
def deadletters_show(letter_id: str) -> None:
    """Print dead letter LETTER_ID with its payload (JSON)."""
    click.echo(json.dumps(_client().get(f"{DEADLETTERS}/{letter_id}"), indent=2))


@deadletters_group.command("replay")
@click.argument("letter_id")
def deadletters_replay(letter_id: str) -> None:
    """Send LETTER_ID again: a webhook with a fresh attempt budget (same webhook-id), a step by
    resuming its run."""
    result: dict[str, Any] = _client().post(f"{DEADLETTERS}/{letter_id}/replay")
    click.echo(f"dead letter {letter_id} ({result['kind']}) replayed")


@deadletters_group.command("purge")
@click.argument("letter_id", required=False)
@click.option("--kind", type=click.Choice(dead_letters.KINDS), default=None)
@click.option("--yes", is_flag=True, help="Do not ask before purging them all.")
def deadletters_purge(letter_id: str | None, kind: str | None, yes: bool) -> None:
    """Delete LETTER_ID, or every dead letter (of --kind)."""
    client = _client()
    if letter_id:
        client.request("DELETE", f"{DEADLETTERS}/{letter_id}")
        click.echo(f"dead letter {letter_id} purged")
        return
    if not yes:
        click.confirm(f"Purge all {kind or ''} dead letters?".replace("  ", " "), abort=True)
    params = {"kind": kind} if kind else {}
    result: dict[str, Any] = client.request("DELETE", DEADLETTERS, params=params)
    click.echo(f"purged {result['purged']} dead letter{'s' if result['purged'] != 1 else ''}")

"""`agent33 channels add|list|remove|pair`: messaging channels, through the HTTP API."""

from __future__ import annotations

from typing import Any

import click

from agent33.channels.registry import KINDS
from agent33.cli.client import ApiClient, ApiError
from agent33.cli.output import emit_json, table
from agent33.embedded import resolve_settings

BASE = "/api/v1/channels"


class _Api:
    """The API client, with an error's fields in its one-line message (which option to fix)."""

    def __init__(self) -> None:
        self.client = ApiClient(resolve_settings())

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.client.request(method, path, **kwargs)
        except ApiError as exc:
            problems = "; ".join(
                f"{name}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                for name, v in exc.fields.items()
            )
            raise click.ClickException(
                exc.message + (f" ({problems})" if problems else "")
            ) from None


def _client() -> _Api:
    return _Api()


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key or not item:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = item
    return pairs


@click.group("channels")
def channels_group() -> None:
    """Chat platforms (Telegram, Slack, Discord, WhatsApp) in front of agents."""


@channels_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def channels_list(as_json: bool) -> None:
    """List channels with their agent and webhook URL."""
    listing = _client()("GET", BASE)
    if as_json:
        emit_json(listing)
        return
    rows = [
        (
            c["kind"],
            c["name"],
            c["agent"] or f"workflow {c['workflow']}",
            "pairing" if c["require_pairing"] else "open",
            c["webhook"],
        )
        for c in listing["items"]
    ]
    table(["kind", "name", "answers", "access", "webhook"], rows)


@channels_group.command("add")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--agent", default=None, help="The agent that answers.")
@click.option("--workflow", default=None, help="Or: the workflow each message starts.")
@click.option("--api-url", default=None, help="The platform API's base URL (default: its own).")
@click.option("--option", "options", multiple=True, help="KEY=VALUE, e.g. public_key=<hex>.")
@click.option("--secret", "secrets", multiple=True, help="ROLE=VAULT_NAME, e.g. token=TG_TOKEN.")
@click.option("--require-pairing", is_flag=True, help="Refuse senders that are not paired.")
@click.option("--allow", "allowlist", multiple=True, help="A sender id allowed without pairing.")
@click.option("--json", "as_json", is_flag=True)
def channels_add(
    kind: str,
    name: str,
    agent: str | None,
    workflow: str | None,
    api_url: str | None,
    options: tuple[str, ...],
    secrets: tuple[str, ...],
    require_pairing: bool,
    allowlist: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add channel NAME on platform KIND; its secrets are read from the vault."""
    if (agent is None) == (workflow is None):
        raise click.UsageError("give exactly one of --agent and --workflow")
    body: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "agent": agent,
        "workflow": workflow,
        "api_url": api_url,
        "options": _pairs(options, "--option"),
        "secrets": _pairs(secrets, "--secret"),
        "require_pairing": require_pairing,
        "allowlist": list(allowlist),
    }
    created = _client()("POST", BASE, json=body)
    if as_json:
        emit_json(created)
        return
    click.echo(f"channel {kind}/{name} added; webhook {created['webhook']}")
    for role, secret in created["secrets"].items():
        click.echo(f"  {role}: vault secret {secret} (agent33 vault set {secret})")


@channels_group.command("remove")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
def channels_remove(kind: str, name: str) -> None:
    """Remove channel NAME of platform KIND."""
    _client()("DELETE", f"{BASE}/{kind}/{name}")
    click.echo(f"channel {kind}/{name} removed")


@channels_group.command("pair")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--user", default=None, help="The user to pair (default: the caller).")
@click.option("--json", "as_json", is_flag=True)
def channels_pair(kind: str, name: str, user: str | None, as_json: bool) -> None:
    """Issue a one-time code that links a chat sender to an Agent33 user."""
    issued = _client()("POST", f"{BASE}/{kind}/{name}/pairings", json={"user": user})
    if as_json:
        emit_json(issued)
        return
    click.echo(f"code {issued['code']} for {issued['user']}: {issued['instructions']}")

"""What `agent33 workflows` and `agent33 agents` share: stored definitions through the API
(`/api/v1/<kind>`), listed, shown as YAML, and pushed from files checked locally first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.embedded import resolve_settings


def list_stored(kind: str, as_json: bool) -> None:
    """The latest version of each stored definition of `kind` (`workflows`, `agents`)."""
    body = ApiClient(resolve_settings()).get(f"/api/v1/{kind}")
    items = body["items"] if isinstance(body, dict) else body
    if as_json:
        emit_json(items)
        return
    table(
        ["name", "version", "description"],
        [(d["name"], d["version"], d.get("description", "")) for d in items],
    )


def show_stored(kind: str, name: str, version: int | None) -> None:
    """One stored definition (the latest, or `version`) as YAML."""
    params = {"version": version} if version else {}
    body = ApiClient(resolve_settings()).get(f"/api/v1/{kind}/{name}", params=params)
    click.echo(yaml.safe_dump(body.get("spec", body), sort_keys=False))


def push_documents(kind: str, documents: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Store documents already checked locally, so none is half-pushed."""
    client = ApiClient(resolve_settings())
    for path, document in documents:
        stored = client.post(
            f"/api/v1/{kind}",
            data=json.dumps(document, default=str),  # YAML dates become strings, as when synced
            headers={"Content-Type": "application/json"},
        )
        click.echo(f"{path}: pushed ({stored['name']} v{stored['version']})")

"""`agent33 status`: the API's /health as a readable table."""

from __future__ import annotations

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import clip, emit_json, fail, table
from agent33.embedded import resolve_settings


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_command(as_json: bool) -> None:
    """Health of database, broker, result backend, Ollama and workers."""
    settings = resolve_settings()
    health = ApiClient(settings, timeout=5).get("/health")
    if as_json:
        emit_json(health)
    else:
        click.echo(f"API {settings.effective_api_url}: {health.get('status')}")
        rows = []
        for name, info in health.get("services", {}).items():
            detail = info.get("error") or info.get("detail") or ""
            if "latency_ms" in info:
                detail = f"{info['latency_ms']} ms {detail}".strip()
            optional = "" if info.get("required", True) else " (optional)"
            rows.append((name, f"{info.get('status')}{optional}", clip(detail)))
        table(["service", "status", "detail"], rows)
        if any(r[2].endswith("...") for r in rows):
            click.echo("(details shortened; `agent33 status --json` has them in full)")
    if health.get("status") != "healthy":
        fail(f"degraded: {', '.join(health.get('down', []))}")

"""Live per-step progress of a run, polled from the API."""

from __future__ import annotations

import time
from typing import Any

import click

from agent33.cli.client import ApiClient

TERMINAL = {"succeeded", "failed", "cancelled"}


def _describe(step: dict[str, Any]) -> str:
    line = f"  {step['step_id']:<24} {step['state']}"
    if step.get("attempt", 0) > 1:
        line += f" (attempt {step['attempt']})"
    if step["state"] == "failed" and step.get("error"):
        line += f": {step['error'].get('message', '')}"
    return line


def follow(
    client: ApiClient, run_id: str, *, timeout: float, quiet: bool = False
) -> dict[str, Any]:
    """Print each step's state as it changes; return the finished run (or raise on timeout)."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    interval = 0.1
    while True:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}")
        for step in run.get("steps", []):
            if seen.get(step["step_id"]) != step["state"]:
                seen[step["step_id"]] = step["state"]
                if not quiet:
                    click.echo(_describe(step))
        if run["state"] in TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise click.ClickException(f"run {run_id} still {run['state']} after {timeout:.0f}s")
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)

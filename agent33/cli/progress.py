"""Live per-step progress of a run, polled from the API."""

from __future__ import annotations

import time
from typing import Any

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import error_text

TERMINAL = {"succeeded", "failed", "cancelled"}
STEP_TERMINAL = TERMINAL | {"skipped"}


def _describe(step: dict[str, Any]) -> str:
    line = f"  {step['step_id']:<24} {step['state']}"
    if step.get("attempt", 0) > 1:
        line += f" (attempt {step['attempt']})"
    if step["state"] == "failed" and step.get("error"):
        line += f": {error_text({**step['error'], 'step': None})}"
    return line


def _changes(steps: list[dict[str, Any]], seen: dict[str, tuple[str, int]]) -> list[dict[str, Any]]:
    """The steps to print from one poll, in a stable order: a map or group parent that just
    finished comes after its children (`fan[0]`...), and a step seen `queued` is not printed
    going back to `pending` in the same attempt (two reads racing the dispatcher)."""
    changed = []
    for step in steps:
        previous = seen.get(step["step_id"])
        attempt = step.get("attempt", 0)
        if previous is not None and previous[0] == step["state"]:
            continue
        if previous == ("queued", attempt) and step["state"] == "pending":
            continue
        seen[step["step_id"]] = (step["state"], attempt)
        changed.append(step)

    def finished_parent(step: dict[str, Any]) -> bool:
        prefix = f"{step['step_id']}["
        has_children = any(other["step_id"].startswith(prefix) for other in steps)
        return has_children and step["state"] in STEP_TERMINAL

    return sorted(changed, key=finished_parent)  # stable: otherwise the API's order


def follow(
    client: ApiClient, run_id: str, *, timeout: float, quiet: bool = False
) -> dict[str, Any]:
    """Print each step's state as it changes; return the finished run (or raise on timeout)."""
    seen: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    interval = 0.1
    while True:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}")
        for step in _changes(run.get("steps", []), seen):
            if not quiet:
                click.echo(_describe(step))
        if run["state"] in TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise click.ClickException(f"run {run_id} still {run['state']} after {timeout:.0f}s")
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)

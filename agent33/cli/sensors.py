"""`agent33 sensors list|show NAME` and `agent33 events send NAME`: through the HTTP API."""

from __future__ import annotations

import json
from typing import Any

import click

from agent33.cli.client import ApiClient
from agent33.cli.output import emit_json, table
from agent33.embedded import resolve_settings


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _target(sensor: dict[str, Any]) -> str:
    spec = sensor.get("spec") or {}
    if sensor["kind"] == "event":
        return f"event {sensor.get('event')}"
    if sensor["kind"] == "file_change":
        return f"{spec.get('directory')}/{spec.get('glob', '*')}"
    source = spec.get("path") or spec.get("url") or f"collection {spec.get('collection')}"
    return f"{source} > {spec.get('max_age'):g}s"


@click.group("sensors")
def sensors_group() -> None:
    """Sensors: what they watch, when they last fired and failed."""


@sensors_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sensors_list(as_json: bool) -> None:
    """List sensors with their last check, trigger and error."""
    page = ApiClient(resolve_settings()).get("/api/v1/sensors")
    if as_json:
        emit_json(page)
        return
    rows = [
        (
            s["name"],
            s["kind"],
            _target(s),
            s["workflow"],
            "on" if s["enabled"] else "off",
            _when(s.get("last_check_at")),
            _when(s.get("last_trigger_at")),
            s.get("triggers", 0),
            "yes" if s.get("last_error") else "-",
        )
        for s in page["items"]
    ]
    headers = ["name", "kind", "watches", "workflow", "enabled", "checked", "fired", "runs"]
    table([*headers, "error"], rows)


@sensors_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sensors_show(name: str, as_json: bool) -> None:
    """Show a sensor's definition and state (last check, trigger, run, error)."""
    sensor = ApiClient(resolve_settings()).get(f"/api/v1/sensors/{name}")
    if as_json:
        emit_json(sensor)
        return
    click.echo(f"sensor {sensor['name']}  {sensor['kind']}  -> {sensor['workflow']}")
    click.echo(f"watches:       {_target(sensor)}")
    click.echo(f"enabled:       {'yes' if sensor['enabled'] else 'no'}  ({sensor['source']})")
    click.echo(f"checks:        {sensor['checks']}, last {_when(sensor.get('last_check_at'))}")
    click.echo(f"runs started:  {sensor['triggers']}, last {_when(sensor.get('last_trigger_at'))}")
    click.echo(f"last run:      {sensor.get('last_run_id') or '-'}")
    error = sensor.get("last_error")
    click.echo(
        f"last error:    {error + ' at ' + _when(sensor['last_error_at']) if error else '-'}"
    )


@click.group("events")
def events_group() -> None:
    """Named events that start the runs of the sensors listening to them."""


@events_group.command("send")
@click.argument("name")
@click.option("--payload", "payload_raw", default="{}", show_default=True, help="JSON object.")
@click.option("--key", default=None, help="Idempotency key: the same key starts nothing twice.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def events_send(name: str, payload_raw: str, key: str | None, as_json: bool) -> None:
    """Send event NAME; prints the run each listening sensor started."""
    try:
        payload = json.loads(payload_raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at position {exc.pos})", param_hint="--payload"
        ) from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    body: dict[str, Any] = {"payload": payload}
    if key is not None:
        body["key"] = key
    result = ApiClient(resolve_settings()).post(f"/api/v1/events/{name}", json=body)
    if as_json:
        emit_json(result)
        return
    for run in result["runs"]:
        seen = " (seen before)" if run["duplicate"] else ""
        click.echo(f"run {run['id']} of {run['workflow']} (sensor {run['sensor']}){seen}")

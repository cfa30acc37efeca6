"""`agent33 run NAME` and `agent33 runs list|show|cancel|resume|approve`: through the HTTP API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click

from agent33.cli.client import ApiClient, ApiError
from agent33.cli.output import clip, emit_json, error_text, fail, table
from agent33.cli.progress import follow
from agent33.definitions.loader import SUFFIXES, load_workflow_file
from agent33.embedded import resolve_settings
from agent33.engine.states import RunState
from agent33.engine.validation import validate_workflow
from agent33.wire import MAX_PRIORITY


def parse_inputs(raw: str) -> dict[str, Any]:
    """`--inputs` takes a JSON object, or @path to a JSON file."""
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {raw[1:]}: {exc.strerror}", param_hint="--inputs"
            ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at position {exc.pos})", param_hint="--inputs"
        ) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--inputs")
    return value


def start_and_follow(
    client: ApiClient,
    name: str,
    inputs: dict[str, Any],
    *,
    wait: bool,
    timeout: float,
    as_json: bool,
    priority: int = 0,
) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": inputs}
    if priority:
        body["priority"] = priority
    created: dict[str, Any] = client.post(f"/api/v1/workflows/{name}/runs", json=body)
    run_id = created["id"]
    if not as_json:
        queued = " and queued: its concurrency key is at its limit" * (created["state"] == "queued")
        click.echo(f"run {run_id} ({name} v{created.get('version')}) accepted{queued}")
    if not wait:
        return created
    run = follow(client, run_id, timeout=timeout, quiet=as_json)
    return run


def local_workflow_file(name: str, definitions_dir: Path) -> Path | None:
    """NAME's definition file under ./definitions or the configured definitions directory."""
    for folder in (Path("definitions"), definitions_dir):
        for suffix in SUFFIXES:
            path = folder / "workflows" / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def push_workflow(client: ApiClient, path: Path) -> dict[str, Any]:
    """Check the file locally, then store it (what `workflows push` does for one file)."""
    workflow, document = load_workflow_file(path)
    validate_workflow(workflow, str(path))
    stored: dict[str, Any] = client.post(
        "/api/v1/workflows",
        data=json.dumps(document, default=str),
        headers={"Content-Type": "application/json"},
    )
    return stored


@click.command("run")
@click.argument("name")
@click.option(
    "--inputs", "inputs_raw", default="{}", show_default=True, help="JSON object or @file.json"
)
@click.option("--wait/--no-wait", default=False, help="Follow step progress until the run ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--push", is_flag=True, help="First store definitions/workflows/NAME.yaml (a local file)."
)
@click.option(
    "--priority",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_PRIORITY),
    help="0 to 9 (most urgent): the broker serves this run's steps first.",
)
def run_command(
    name: str,
    inputs_raw: str,
    wait: bool,
    timeout: float,
    as_json: bool,
    push: bool,
    priority: int,
) -> None:
    """Start a run of workflow NAME (and with --wait, show its steps live)."""
    inputs = parse_inputs(inputs_raw)
    settings = resolve_settings()
    client = ApiClient(settings)
    local = local_workflow_file(name, settings.definitions_dir)
    if push:
        if local is None:
            fail(f"--push: no definitions/workflows/{name}.yaml here to push")
        stored = push_workflow(client, local)
        if not as_json:
            click.echo(f"{local}: pushed ({stored['name']} v{stored['version']})")
    try:
        run = start_and_follow(
            client, name, inputs, wait=wait, timeout=timeout, as_json=as_json, priority=priority
        )
    except ApiError as exc:
        if exc.status == 404 and local is not None and not push:
            fail(
                f"workflow {name!r} is not stored on the server, but {local} exists: "
                f"push it with `agent33 workflows push {local}` (or run with --push)"
            )
        raise
    if as_json:
        emit_json(run)
        if wait and run["state"] != "succeeded":
            fail(f"run {run['state']}: {error_text(run.get('error') or {})}")
    elif wait:
        report(run)


def report(run: dict[str, Any]) -> None:
    """The end of a `--wait`: state and outputs; a run that did not succeed exits 1."""
    click.echo(f"run {run['id']} {run['state']}")
    if run.get("outputs") is not None:
        click.echo(json.dumps(run["outputs"], indent=2))
    if run["state"] != "succeeded":
        fail(f"run {run['state']}: {error_text(run.get('error') or {})}")


@click.group("runs")
def runs_group() -> None:
    """Inspect runs."""


@runs_group.command("list")
@click.option("--workflow", default=None)
@click.option("--state", default=None, type=click.Choice([s.value for s in RunState]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@click.option("--json", "as_json", is_flag=True)
def runs_list(workflow: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List recent runs."""
    params = {k: v for k, v in {"workflow": workflow, "state": state, "limit": limit}.items() if v}
    page = ApiClient(resolve_settings()).get("/api/v1/runs", params=params)
    if as_json:
        emit_json(page)
        return
    rows = [(r["id"], r["workflow"], r["state"], r["created_at"]) for r in page["items"]]
    table(["id", "workflow", "state", "created"], rows)


@runs_group.command("show")
@click.argument("run_id", type=click.UUID)
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id: uuid.UUID, as_json: bool) -> None:
    """Show a run, its steps and outputs."""
    run = ApiClient(resolve_settings()).get(f"/api/v1/runs/{run_id}")
    if as_json:
        emit_json(run)
        return
    click.echo(f"run {run['id']}  {run['workflow']} v{run['version']}  {run['state']}")
    if run.get("concurrency_key") is not None or run.get("priority"):
        click.echo(f"concurrency key {run.get('concurrency_key')!r}  priority {run['priority']}")
    table(
        ["step", "state", "attempt", "queue", "error"],
        [
            (s["step_id"], s["state"], s["attempt"], s["queue"], clip(error_text(s["error"])))
            if s.get("error")
            else (s["step_id"], s["state"], s["attempt"], s["queue"], "")
            for s in run["steps"]
        ],
    )
    for wait in run.get("awaiting") or []:
        call = wait.get("tool_call")
        proposed = f": tool {call['name']} {json.dumps(call['arguments'])}" if call else ""
        click.echo(f"awaiting approval: {wait['step_id']} {wait['prompt']}{proposed}")
    show_usage(run.get("usage") or {})
    if run.get("outputs") is not None:
        click.echo(json.dumps(run["outputs"], indent=2))
    if run.get("error"):
        click.echo(f"error: {error_text(run['error'])}")


def show_usage(usage: dict[str, Any]) -> None:
    """Model usage per step and in total (tokens, cost, time in model calls), and the budget."""
    steps = usage.get("steps") or {}
    if not steps:
        return
    columns = ("prompt_tokens", "completion_tokens", "cost", "latency_ms", "model_calls")
    rows = [(step, *(values.get(c, 0) for c in columns)) for step, values in steps.items()]
    rows.append(("total", *(usage.get(c, 0) for c in columns)))
    table(["usage", "prompt", "completion", "cost", "model ms", "calls"], rows)
    budget = usage.get("budget")
    if budget:
        limits = ", ".join(
            f"{k} {budget[k]}" for k in ("tokens", "cost") if budget.get(k) is not None
        )
        click.echo(
            f"budget: {limits}; used {budget['tokens_used']} tokens, cost {budget['cost_used']}"
        )


@runs_group.command("cancel")
@click.argument("run_id", type=click.UUID)
def runs_cancel(run_id: uuid.UUID) -> None:
    """Cancel a run that has not finished (running steps are terminated)."""
    result = ApiClient(resolve_settings()).post(f"/api/v1/runs/{run_id}/cancel")
    click.echo(f"run {result['id']} {result['state']}")


@runs_group.command("resume")
@click.argument("run_id", type=click.UUID)
@click.option("--wait/--no-wait", default=False, help="Follow step progress until the run ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
def runs_resume(run_id: uuid.UUID, wait: bool, timeout: float) -> None:
    """Resume a failed or cancelled run: only the steps that did not succeed run again."""
    client = ApiClient(resolve_settings())
    result = client.post(f"/api/v1/runs/{run_id}/resume")
    if not wait:
        click.echo(f"run {result['id']} resumed ({result['state']})")
        return
    report(follow(client, str(result["id"]), timeout=timeout))


@runs_group.command("approve")
@click.argument("run_id", type=click.UUID)
@click.argument("step_id")
@click.option("--reject", is_flag=True, help="Reject instead: the waiting step fails.")
@click.option("--comment", default=None, help="Recorded with the decision (max 2000 chars).")
def runs_approve(run_id: uuid.UUID, step_id: str, reject: bool, comment: str | None) -> None:
    """Approve (or --reject) a step awaiting approval: a `wait` gate, or an agent's proposed
    tool call (rejected: the model is told so and continues)."""
    body: dict[str, Any] = {"step_id": step_id, "approved": not reject}
    if comment is not None:
        body["comment"] = comment
    result = ApiClient(resolve_settings()).post(f"/api/v1/runs/{run_id}/approve", json=body)
    verdict = "rejected" if reject else "approved"
    click.echo(f"step {step_id} of run {result['id']} {verdict}; run {result['state']}")


@runs_group.command("lineage")
@click.argument("run_id", type=click.UUID)
@click.option("--json", "as_json", is_flag=True)
def runs_lineage(run_id: uuid.UUID, as_json: bool) -> None:
    """Show which step outputs and inputs fed each step, and which documents were cited."""
    graph = ApiClient(resolve_settings()).get(f"/api/v1/runs/{run_id}/lineage")
    if as_json:
        emit_json(graph)
        return
    click.echo(f"run {graph['run_id']}  {graph['workflow']} v{graph['version']}  {graph['state']}")
    rows = [
        (
            edge["source"],
            edge["target"],
            edge["kind"],
            edge.get("from") or (f"chunk {edge['chunk_id']}" if edge.get("chunk_id") else ""),
            edge.get("to") or "",
        )
        for edge in graph["edges"]
    ]
    table(["from node", "to node", "kind", "reads", "into"], rows)

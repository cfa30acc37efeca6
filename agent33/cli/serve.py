"""`agent33 serve`: the whole system in one command (API + worker + beat), Ctrl-C stops all.

With no DATABASE_URL / REDIS_URL it starts the embedded PostgreSQL and Redis first, and stops
them last. `--demo` runs the demo workflow through the API once everything is healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click
import requests

from agent33 import db
from agent33.cli import flower as flower_cli
from agent33.cli.client import ApiClient, admin_key_path
from agent33.cli.output import fail
from agent33.cli.progress import follow
from agent33.config import Settings, load_settings
from agent33.db import migrate
from agent33.embedded import ManagedServer, embedded_services
from agent33.llm.local_model import LocalModelError, local_model_service
from agent33.observability.logging import configure_logging
from agent33.observability.metrics import wipe
from agent33.supervision import Supervisor, Unit
from agent33.wire import Queue

DEMO_WORKFLOW = "demo_assistant"  # ends with an agent step that a model answers
DEMO_WITHOUT_MODEL = "demo_greeting"  # transform steps only: when no model can answer


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None


def prepare_database(settings: Settings) -> None:
    """Migrate, then store the shipped definitions (validated) so runs can start; sensors
    and channels last, since they name their workflows."""
    from agent33.automation.schedule_store import sync_declared
    from agent33.automation.sensors import sync_sensors
    from agent33.channels.definitions import sync_channels
    from agent33.definitions.registry import definition_of, is_latest, sync_directory
    from agent33.engine.validation import validate_workflow

    assert settings.database_url is not None
    migrate.upgrade(settings.database_url)
    db.configure(settings)
    from agent33.definitions.agents import sync_agents
    from agent33.tools import known_tools

    tools = known_tools(settings)  # a broken definitions/tools/ file stops start-up, named
    with db.session_scope() as session:
        sync_agents(session=session, directory=settings.definitions_dir, tools=tools)
        stored = sync_directory(
            session=session,
            directory=settings.definitions_dir,
            validator=lambda workflow, origin: validate_workflow(workflow, origin, tools),
        )
        for row, _ in stored:
            if is_latest(session=session, row=row):
                sync_declared(session=session, workflow=definition_of(row))
        sync_sensors(session=session, settings=settings, directory=settings.definitions_dir)
        sync_channels(session=session, directory=settings.definitions_dir)


def ensure_admin_key(settings: Settings) -> str | None:
    """Create the local admin key on first start; returns it when new (printed once)."""
    from agent33.security.api_keys import authenticate_api_key, create_api_key

    path = admin_key_path(settings)
    if path.exists():
        try:
            with db.session_scope() as session:
                authenticate_api_key(session=session, raw=path.read_text().strip())
            return None
        except Exception as exc:  # noqa: BLE001 - stale key (database recreated): issue a new one
            click.echo(f"the saved admin key is not valid here ({exc}); creating a new one")
    with db.session_scope() as session:
        _, raw = create_api_key(session=session, name="local-admin", scopes=["admin"])
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(raw + "\n")
    path.chmod(0o600)
    return raw


def prepare_sandbox(settings: Settings) -> None:
    """As root, `run_command` children run as `agent33-sandbox`: create it now (like the
    PostgreSQL user) and let it work in the file roots, and nowhere else of ours."""
    from agent33.security import sandbox

    identity = sandbox.ensure_user()
    if identity is not None:
        sandbox.grant_roots(settings.file_roots, identity)


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    assert settings.database_url and settings.redis_url
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        API_PORT=str(settings.api_port),
        AGENT33_VAR_DIR=str(settings.var_dir.absolute()),
        AGENT33_DEFINITIONS_DIR=str(settings.definitions_dir.absolute()),
        PYTHONUNBUFFERED="1",
    )
    if settings.local_model_url:
        env["AGENT33_LOCAL_MODEL_URL"] = settings.local_model_url
    return env


WEB_WORKERS = 2
WEB_THREADS = 32  # per web worker: requests it serves at once (chats waiting on a model)


def _control_socket(settings: Settings) -> list[str]:
    """gunicorn's runtime-management socket lives with our other state, not in $HOME (none
    where var/ is too deep for a Unix socket path)."""
    path = (settings.var_dir / "gunicorn.ctl").absolute()
    return ["--control-socket", str(path)] if len(str(path)) < 100 else ["--no-control-socket"]


def commands(
    settings: Settings, host: str, web_workers: int, concurrency: int
) -> dict[str, list[str]]:
    python = sys.executable
    queues = ",".join(q.value for q in Queue)
    return {
        "web": [
            python,
            "-m",
            "gunicorn",
            "web.wsgi:app",
            "--config",
            "python:web.gunicorn_conf",
            "--bind",
            f"{host}:{settings.api_port}",
            "--workers",
            str(web_workers),
            # Threads: a chat holds its request while the `llm` worker answers (up to
            # AGENT33_CHAT_TIMEOUT, or for a whole SSE stream); a sync worker would serve one.
            "--worker-class",
            "gthread",
            "--threads",
            str(WEB_THREADS),
            "--timeout",
            "30",
            "--graceful-timeout",
            "10",
            "--max-requests",
            "1000",
            "--max-requests-jitter",
            "100",
            # gunicorn's runtime-management socket lives with our other state, not in $HOME.
            *_control_socket(settings),
        ],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            queues,
            "-n",
            "serve@%h",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "tasks",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str((settings.var_dir / "celerybeat-schedule").absolute()),
        ],
    }


def metrics_dir(settings: Settings, name: str) -> Path:
    """Each process group's own PROMETHEUS_MULTIPROC_DIR, emptied before it starts."""
    path = (settings.var_dir / "metrics" / name).absolute()
    wipe(path)
    return path


def with_flower(settings: Settings, argv: dict[str, list[str]], port: int) -> dict[str, list[str]]:
    """Add Flower, and turn the worker's task events on (Flower shows nothing without them)."""
    user, password, new = flower_cli.credentials(settings)
    where = (
        "AGENT33_FLOWER_PASSWORD"
        if flower_cli.configured(settings) is not None
        else str(settings.var_dir / flower_cli.CREDENTIALS_FILE)
    )
    click.echo(f"Flower: http://127.0.0.1:{port}  (user {user}; password in {where})")
    if new:
        click.echo(f"  password (shown once): {password}")
    return {
        **argv,
        "worker": [*argv["worker"], "--task-events"],
        "flower": flower_cli.command(settings, port, user, password),
    }


def start_child(settings: Settings, name: str, command: list[str], verbose: bool) -> Child:
    log_dir = settings.var_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o700)  # the worker's logs are not for the sandboxed commands' user
    log = None if verbose else open(log_dir / f"{name}.log", "ab")  # noqa: SIM115
    env = child_environment(settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(settings, name))
    # Own process group: Ctrl-C reaches serve alone, which then stops each child once
    # (SIGTERM); a second signal mid-shutdown made beat write to its closed schedule shelf.
    process = subprocess.Popen(  # noqa: S603 - argv built by commands()
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
        process_group=0,
    )
    return Child(name, process, log)


def start_children(settings: Settings, argv: dict[str, list[str]], verbose: bool) -> list[Child]:
    return [start_child(settings, name, command, verbose) for name, command in argv.items()]


def supervisor(
    settings: Settings,
    servers: list[ManagedServer],
    children: list[Child],
    argv: dict[str, list[str]],
    verbose: bool,
) -> Supervisor:
    """Servers first (the processes need them), then the processes, each restarted in place."""

    def restart_child(index: int) -> None:
        old = children[index]
        if old.log:
            old.log.close()
        children[index] = start_child(settings, old.name, argv[old.name], verbose)

    units = [Unit(server.name, server.alive, server.restart) for server in servers]
    for index, child in enumerate(children):
        units.append(
            Unit(
                child.name,
                lambda i=index: children[i].process.poll() is None,  # type: ignore[misc]
                lambda i=index: restart_child(i),  # type: ignore[misc]
            )
        )
    return Supervisor(settings, units, lambda line: click.echo(f"supervisor: {line}"))


def stop_children(children: list[Child], timeout: float = 20.0) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        if child.log:
            child.log.close()


def wait_healthy(
    settings: Settings, children: list[Child], timeout: float = 90.0
) -> dict[str, Any]:
    url = f"{settings.effective_api_url}/health"
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        dead = [c.name for c in children if c.process.poll() is not None]
        if dead:
            raise click.ClickException(
                f"{', '.join(dead)} exited during start-up; see {settings.var_dir / 'logs'}"
            )
        try:
            response = requests.get(url, timeout=3)
            last = response.json()
            if response.status_code == 200:
                return last
            if last.get("down") == ["model"]:  # up, but nothing can answer agents yet
                error = last["services"]["model"].get("error", "")
                click.echo(f"warning: no model can answer agent steps or chats: {error}")
                return last
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.3)
    raise click.ClickException(
        f"the system was not healthy after {timeout:.0f}s: {json.dumps(last)}"
    )


def run_demo(settings: Settings, health: dict[str, Any]) -> bool:
    client = ApiClient(settings)
    inputs = {"name": "world", "times": 3}
    workflow = DEMO_WORKFLOW
    model = health.get("services", {}).get("model", {})
    if model.get("status") != "up":
        workflow = DEMO_WITHOUT_MODEL
        click.echo(f"demo: no model can answer, so {DEMO_WORKFLOW}'s agent step is skipped")
    click.echo(f"demo: running workflow {workflow} with inputs {json.dumps(inputs)}")
    created = client.post(f"/api/v1/workflows/{workflow}/runs", json={"inputs": inputs})
    run = follow(client, created["id"], timeout=120)
    click.echo(f"demo: run {run['id']} {run['state']}")
    click.echo(
        json.dumps(
            run.get("outputs") if run["state"] == "succeeded" else run.get("error"), indent=2
        )
    )
    return bool(run["state"] == "succeeded")


class _Stop:
    requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = True


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API binds.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Overrides API_PORT.")
@click.option("--web-workers", default=WEB_WORKERS, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Celery worker processes.",
)
@click.option("--demo", is_flag=True, help="Run the demo workflow once the system is healthy.")
@click.option("--exit-after-demo", is_flag=True, help="Stop everything after the demo (CI, tests).")
@click.option("--verbose", is_flag=True, help="Show the processes' logs here instead of var/logs/.")
@click.option("--flower", is_flag=True, help="Also start Flower (basic auth, 127.0.0.1).")
@click.option("--flower-port", default=flower_cli.DEFAULT_PORT, show_default=True, type=int)
def serve_command(
    host: str,
    port: int | None,
    web_workers: int,
    concurrency: int,
    demo: bool,
    exit_after_demo: bool,
    verbose: bool,
    flower: bool,
    flower_port: int,
) -> None:
    """Start API, worker and beat (and the embedded servers when no URLs are set)."""
    settings = load_settings()
    if port:
        settings = settings.replace(api_port=port)
    configure_logging(settings)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    servers: list[ManagedServer] = []
    with (
        embedded_services(settings, servers=servers) as embedded,
        _local_model(embedded) as resolved,
    ):
        if settings.embedded:
            click.echo(f"embedded PostgreSQL: {resolved.database_url}")
            click.echo(f"embedded Redis:      {resolved.redis_url}")
        prepare_database(resolved)
        new_key = ensure_admin_key(resolved)
        prepare_sandbox(resolved)
        if new_key:
            click.echo(f"local admin API key (shown once, saved to {admin_key_path(resolved)}):")
            click.echo(f"  {new_key}")
        else:
            click.echo(f"local admin API key: in {admin_key_path(resolved)}")
        argv = commands(resolved, host, web_workers, concurrency)
        if flower:
            argv = with_flower(resolved, argv, flower_port)
        children = start_children(resolved, argv, verbose)
        ok = True
        try:
            health = wait_healthy(resolved, children)
            api = (
                resolved.effective_api_url
                if host in ("127.0.0.1", "0.0.0.0")  # noqa: S104 - display only
                else f"http://{host}:{resolved.api_port}"
            )  # noqa: S104
            click.echo(
                f"Agent33 is up. API: {api}  OpenAPI: {api}/api/v1/openapi.json  (Ctrl-C stops)"
            )
            if demo:
                ok = run_demo(resolved, health)
                click.echo(f"API: {api}")
            if not (demo and exit_after_demo):
                watch = supervisor(resolved, servers, children, argv, verbose)
                try:
                    _wait(watch, stop)
                finally:
                    watch.close()
        except KeyboardInterrupt:
            pass
        finally:
            click.echo("stopping...")
            stop_children(children)
    if not ok:
        fail("the demo run did not succeed")


@contextlib.contextmanager
def _local_model(settings: Settings) -> Iterator[Settings]:
    """The embedded local model when no model server answers (agent33.llm.local_model)."""
    try:
        with local_model_service(settings, click.echo) as resolved:
            yield resolved
    except LocalModelError as exc:
        raise click.ClickException(f"the local model did not start: {exc}") from None


def _wait(watch: Supervisor, stop: _Stop) -> None:
    while not stop.requested:
        watch.tick()
        time.sleep(0.5)

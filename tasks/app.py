"""The one Celery app, configured from `celeryconfig`; it never needs Flask.

Start a worker:  celery -A tasks worker -Q steps,io,maintenance
GPU worker:      celery -A tasks worker -Q llm.gpu --concurrency 1
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from agent33.config import Settings

app = Celery(
    "agent33",
    include=["tasks.steps", "tasks.runs", "tasks.maintenance", "tasks.llm", "tasks.memory"],
)
app.config_from_object("celeryconfig")

_settings: dict[str, Settings] = {}


def current_settings() -> Settings:
    """The settings this worker process runs with (resolved once)."""
    if "value" not in _settings:
        from agent33.embedded import resolve_settings

        _settings["value"] = resolve_settings()
    return _settings["value"]


def swap_settings(settings: Settings) -> Settings | None:
    """Replace this process's task settings (tests point the in-process worker at fakes)."""
    previous = _settings.get("value")
    _settings["value"] = settings
    return previous


def configure_app(settings: Settings) -> Celery:
    """Point the app (and this process's database binding) at explicit settings."""
    import celeryconfig
    from agent33 import db

    _settings["value"] = settings
    _drop_broker_pools()
    app.conf.update(celeryconfig.build_config(settings))
    db.configure(settings)
    return app


def _drop_broker_pools() -> None:
    """Forget pooled connections/producers bound to the previous broker URL (Celery caches them)."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@signals.worker_init.connect
def _refuse_without_broker(**_: Any) -> None:
    if not app.conf.broker_url:
        raise SystemExit(
            "REDIS_URL is not set and no embedded Redis runs: "
            "start `agent33 serve` or set REDIS_URL"
        )


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    from agent33.db import dispose_after_fork
    from agent33.observability.logging import configure_logging

    dispose_after_fork()
    configure_logging(current_settings())


@signals.task_prerun.connect
def _stop_commands_on_sigterm(**_: Any) -> None:
    """Here, not at `worker_process_init`: billiard installs its own SIGTERM handler after that
    hook, and ours must wrap it so a `revoke(terminate=True)` stops the step's commands first."""
    from agent33.security.processes import install_sigterm_handler

    install_sigterm_handler()

"""The one Celery app, configured from `celeryconfig`; it never needs Flask.

Start a worker:  celery -A tasks worker -Q steps,io,maintenance
GPU worker:      celery -A tasks worker -Q llm.gpu --concurrency 1
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, signals

from agent33.config import Settings

app = Celery(
    "agent33",
    include=[
        "tasks.steps",
        "tasks.runs",
        "tasks.maintenance",
        "tasks.llm",
        "tasks.memory",
        "tasks.io",
        "tasks.channels",
    ],
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


@contextmanager
def settings_swapped(settings: Settings) -> Iterator[Settings]:
    """`swap_settings` for a block: the previous settings come back after it."""
    previous = swap_settings(settings)
    try:
        yield settings
    finally:
        if previous is not None:
            swap_settings(previous)


def configure_app(settings: Settings) -> Celery:
    """Point the app (and this process's database binding) at explicit settings."""
    import celeryconfig
    from agent33 import db

    _settings["value"] = settings
    _drop_broker_pools()
    app.conf.update(celeryconfig.build_config(settings))
    # The result backend is built once (shared, or per thread) from the URL of its first use:
    # forget it too, so the next use connects where these settings say.
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
    db.configure(settings)
    return app


def _drop_broker_pools() -> None:
    """Forget pooled connections/producers bound to the previous broker URL (Celery caches them).

    Forgotten, not closed: whoever still holds the old pool (an in-process worker started on
    it) keeps a working one, where a closed pool answers `Acquire on closed pool`."""
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


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """The main process serves its pool's metrics (AGENT33_WORKER_METRICS_PORT), before the
    pool forks."""
    from agent33.config import ConfigError, load_settings
    from agent33.observability import metrics

    settings = load_settings()
    if settings.worker_metrics_port:
        from agent33.observability.logging import configure_logging

        configure_logging(settings)  # Celery's own set-up comes later; this line is ours
        try:
            metrics.serve_worker_metrics(settings)
        except (ConfigError, OSError) as exc:
            raise SystemExit(f"worker metrics: {exc}") from None


@signals.worker_init.connect
def _trace_without_fork(sender: Any = None, **_: Any) -> None:
    """Pools that do not fork (threads, solo) trace from the main process; prefork children
    start their own tracing after the fork (`_after_fork`)."""
    from agent33.observability import tracing

    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" not in str(name):
        tracing.configure("agent33-worker")


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's own log lines go through Agent33's configuration (JSON in production)."""
    from agent33.config import load_settings
    from agent33.observability.logging import configure_logging

    configure_logging(load_settings(), loglevel)


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    from agent33.db import dispose_after_fork
    from agent33.observability import tracing
    from agent33.observability.logging import configure_logging

    dispose_after_fork()
    configure_logging(current_settings(), logging.getLogger().level)
    tracing.configure("agent33-worker")


@signals.worker_process_shutdown.connect
def _child_exit(pid: int | None = None, **_: Any) -> None:
    from agent33.observability import metrics

    metrics.mark_dead(pid or os.getpid())


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, **_: Any) -> None:
    from agent33.observability import logging as logs

    logs.clear()
    logs.bind(task_id=task_id)


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    from agent33.observability import logging as logs

    logs.clear()


@signals.task_prerun.connect
def _stop_commands_on_sigterm(**_: Any) -> None:
    """Here, not at `worker_process_init`: billiard installs its own SIGTERM handler after that
    hook, and ours must wrap it so a `revoke(terminate=True)` stops the step's commands first."""
    from agent33.security.processes import install_sigterm_handler

    install_sigterm_handler()

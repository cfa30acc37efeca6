"""gunicorn hooks for the API: `gunicorn -c python:web.gunicorn_conf web.wsgi:app`.

Metrics: prometheus_client's multiprocess mode, so `/metrics` from any worker sums them all.
PROMETHEUS_MULTIPROC_DIR defaults to `<AGENT33_VAR_DIR>/metrics/web`, set here in the master
before any worker imports prometheus_client; it is emptied when the master starts, and a worker
that exits is marked dead (its live gauges go; counters and histograms keep their totals).
Tracing is set up by the app factory, which runs in each worker after the fork. gunicorn's own
lines go through Agent33's log configuration (JSON in production); access lines stay off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(os.environ.get("AGENT33_VAR_DIR", "var")).absolute() / "metrics" / "web"),
)

from agent33.observability import metrics  # noqa: E402 - after the variable is set

logconfig_dict = {
    "root": {"level": "INFO", "handlers": ["agent33"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
    "handlers": {"agent33": {"()": "agent33.observability.logging.stdlib_handler"}},
    "formatters": {},
}


def on_starting(server: Any) -> None:
    path = metrics.multiprocess_dir()
    if path is not None:
        metrics.wipe(path)


def child_exit(server: Any, worker: Any) -> None:
    metrics.mark_dead(worker.pid)

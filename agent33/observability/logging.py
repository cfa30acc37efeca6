"""structlog configuration: JSON in production, readable lines in development.

One configuration for structlog's own loggers and for the standard library's (Celery, gunicorn,
SQLAlchemy), so a worker's Celery lines and the engine's events come out in one format. What is
bound with `bind` (run_id, step_id, task_id) is carried by contextvars into every line logged in
that thread, and the current trace id (OpenTelemetry) is added when there is one.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

from agent33.config import Settings

bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
clear = structlog.contextvars.clear_contextvars


def wants_json(settings: Settings) -> bool:
    """AGENT33_LOG_FORMAT, where `auto` means JSON in production only."""
    if settings.log_format == "auto":
        return settings.is_production
    return settings.log_format == "json"


def add_trace_id(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """The trace (and span) the line was logged in, to find the trace from a log line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def _shared() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_id,
    ]


def configure_logging(settings: Settings, level: int | str | None = None) -> None:
    """Configure structlog and the root logger of this process (`level`: e.g. Celery's
    --loglevel; default API_LOG_LEVEL)."""
    if level is None:
        level = settings.log_level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    numeric = level if isinstance(level, int) else logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if wants_json(settings)
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*_shared(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        # Not cached: a worker reconfigures after fork, and loggers made before must follow.
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_agent33", False):  # ours from an earlier call; others stay
            root.removeHandler(old)
    root.addHandler(_handler(renderer))
    root.setLevel(numeric)


class _CurrentStderr:
    """`sys.stderr` as it is when a line is written, not when logging was configured: a
    stream swapped in later (a test's capture, a CLI runner) gets the lines written meanwhile."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _handler(renderer: structlog.types.Processor) -> logging.Handler:
    # The process's own stderr (as Celery's default handler): never a stream someone swapped
    # in for a while (a CLI runner's capture) or Celery's stdout redirection into logging.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler._agent33 = True  # type: ignore[attr-defined]
    return handler


def stdlib_handler() -> logging.Handler:
    """The root handler, for configurations that build their own (gunicorn's
    `logconfig_dict`), in the format the environment's settings ask for."""
    from agent33.config import load_settings

    settings = load_settings()
    return _handler(
        structlog.processors.JSONRenderer()
        if wants_json(settings)
        else structlog.dev.ConsoleRenderer(colors=False)
    )

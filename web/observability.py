"""The API's request metrics, its `/metrics` page and, when tracing is on, its request spans.

Request latency is labelled with the URL rule (`/api/v1/runs/<uuid:run_id>`), never the raw
path, so label values stay bounded. `/metrics` is open unless AGENT33_METRICS_SCOPE names a
scope, which the caller's API key or token must then carry. Under gunicorn the page sums every
worker's metrics (prometheus_client's multiprocess mode, see `web.gunicorn_conf`).
"""

from __future__ import annotations

import time

import flask

from agent33.config import ConfigError, Settings
from agent33.errors import Forbidden
from agent33.observability import metrics, tracing
from agent33.security.scopes import ALL_SCOPES, missing_scopes
from agent33.wire import Queue
from web.auth import authenticate
from web.extensions import get_settings

STARTED = "agent33_started"
UNMATCHED = "<unmatched>"


def _start_timer() -> None:
    flask.g.setdefault(STARTED, time.perf_counter())


def _record(response: flask.Response) -> flask.Response:
    started = flask.g.get(STARTED)
    if started is not None:
        rule = flask.request.url_rule
        metrics.request_finished(
            flask.request.method,
            rule.rule if rule is not None else UNMATCHED,
            response.status_code,
            time.perf_counter() - started,
        )
    return response


def metrics_page() -> flask.Response:
    """The Prometheus text exposition of this API (every worker) and the broker's queues."""
    settings = get_settings()
    if settings.metrics_scope:
        principal = authenticate(flask.request)
        missing = missing_scopes(principal.scopes, [settings.metrics_scope])
        if missing:
            raise Forbidden(
                f"missing scope {', '.join(missing)}",
                fields={"scopes": [f"Requires {scope!r}." for scope in missing]},
            )
    queues = metrics.queue_collector(settings, [q.value for q in Queue])
    return flask.Response(
        metrics.exposition(queues), mimetype=None, content_type=metrics.CONTENT_TYPE
    )


def init_app(app: flask.Flask, settings: Settings) -> None:
    """Time every request (first hook: refused requests count too), serve `/metrics`, and
    trace requests when tracing is on in this process."""
    if settings.metrics_scope and settings.metrics_scope not in ALL_SCOPES:
        raise ConfigError(
            f"AGENT33_METRICS_SCOPE must be a known scope ({', '.join(sorted(ALL_SCOPES))}), "
            f"got {settings.metrics_scope!r}"
        )
    app.before_request(_start_timer)
    app.after_request(_record)
    app.add_url_rule("/metrics", "metrics", metrics_page, methods=["GET"])
    if tracing.configure("agent33-api") and not getattr(app, "_agent33_traced", False):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
            app, tracer_provider=tracing.provider(), excluded_urls="metrics,health"
        )
        app._agent33_traced = True  # type: ignore[attr-defined]

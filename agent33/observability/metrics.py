"""Prometheus metrics: what every process records, and how the web tier and workers expose it.

Recording is in-process only (no database or Redis round trip): a counter or histogram update
is a few microseconds, so the engine's hot path pays nothing measurable. Engine events are
recorded when their transaction commits (`after_commit`, flushed by `session_scope`), so a
rolled-back batch, which the engine runs again, is never counted twice.

Processes that fork (gunicorn workers, Celery's prefork pool) run in prometheus_client's
multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set before Python starts, every process writes
its own files there, and one exporter sums them at scrape time (`exposition`). Without the
variable each process exposes its own registry (tests, `celery worker --pool threads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import redis
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from agent33.config import ConfigError, Settings
from agent33.wire import PRIORITY_STEPS

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
KOMBU_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: `<queue>\x06\x16<priority>` lists
KOMBU_PRIORITIES = PRIORITY_STEPS[1:]  # celeryconfig's steps; 0 is the queue's own list

HTTP_DURATION = Histogram(
    "agent33_http_request_duration_seconds",
    "API request latency by URL rule (never the raw path) and status.",
    ["method", "route", "status"],
)
STEP_DURATION = Histogram(
    "agent33_step_duration_seconds",
    "Step run time by action and the state it ended in (0 for steps that never ran).",
    ["action", "state"],
    buckets=STEP_BUCKETS,
)
RUNS_STARTED = Counter("agent33_runs_started", "Runs created, by workflow.", ["workflow"])
RUNS_FINISHED = Counter(
    "agent33_runs_finished", "Runs that ended, by workflow and state.", ["workflow", "state"]
)
STEP_RETRIES = Counter("agent33_step_retries", "Step attempts scheduled again.", ["action"])
STEP_REDELIVERIES = Counter(
    "agent33_step_redeliveries",
    "Deliveries that took over a running step whose worker was lost.",
    ["action"],
)
STEPS_REAPED = Counter(
    "agent33_steps_reaped",
    "Steps the reaper acted on: redelivered (lease expired), republished (message lost) or "
    "failed (delivery budget spent).",
    ["outcome"],
)
DEAD_LETTERS = Counter("agent33_dead_letters", "Messages given up for good, by kind.", ["kind"])
LLM_CALLS = Counter(
    "agent33_llm_calls",
    "Model calls by provider, model and outcome.",
    ["provider", "model", "outcome"],
)
LLM_TOKENS = Counter(
    "agent33_llm_tokens", "Tokens by provider, model and kind.", ["provider", "model", "kind"]
)
LLM_DURATION = Histogram(
    "agent33_llm_call_duration_seconds",
    "Model call latency by provider and model.",
    ["provider", "model"],
    buckets=LLM_BUCKETS,
)
ALERTS = Counter(
    "agent33_alerts", "Alert incidents fired and resolved, by rule.", ["rule", "event"]
)

_PENDING = "agent33.metrics.pending"
Pending = list[tuple[Callable[..., None], tuple[Any, ...]]]


def after_commit(info: MutableMapping[str, Any], record: Callable[..., None], *args: Any) -> None:
    """Record `record(*args)` once the session owning `info` commits (dropped on rollback)."""
    pending: Pending = info.setdefault(_PENDING, [])
    pending.append((record, args))


def flush(info: MutableMapping[str, Any]) -> None:
    """Called by `session_scope` after its commit."""
    pending: Pending | None = info.pop(_PENDING, None)
    for record, args in pending or ():
        record(*args)


def discard(info: MutableMapping[str, Any]) -> None:
    """Called by `session_scope` after a rollback."""
    info.pop(_PENDING, None)


def step_ended(action: str, state: str, seconds: float) -> None:
    STEP_DURATION.labels(action, state).observe(max(seconds, 0.0))


def run_started(workflow: str) -> None:
    RUNS_STARTED.labels(workflow).inc()


def run_finished(workflow: str, state: str) -> None:
    RUNS_FINISHED.labels(workflow, state).inc()


def step_retried(action: str) -> None:
    STEP_RETRIES.labels(action).inc()


def step_redelivered(action: str) -> None:
    STEP_REDELIVERIES.labels(action).inc()


def step_reaped(outcome: str) -> None:
    STEPS_REAPED.labels(outcome).inc()


def record_dead_letter(kind: str) -> None:
    """One message given up for good (a step, a webhook delivery, ...), by its kind."""
    DEAD_LETTERS.labels(kind).inc()


def alert_event(rule: str, event: str) -> None:
    """An alert rule's incident `firing` or `resolved`."""
    ALERTS.labels(rule, event).inc()


def llm_call(
    provider: str,
    model: str,
    outcome: str,
    seconds: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    LLM_CALLS.labels(provider, model, outcome).inc()
    LLM_DURATION.labels(provider, model).observe(max(seconds, 0.0))
    if prompt_tokens:
        LLM_TOKENS.labels(provider, model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        LLM_TOKENS.labels(provider, model, "completion").inc(completion_tokens)


def request_finished(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)


class QueueDepthCollector:
    """Messages waiting per broker queue, read from Redis at scrape time (one pipelined LLEN
    per list, with a short timeout: a slow broker gives no sample rather than a slow scrape)."""

    def __init__(
        self, url: str, queues: Sequence[str], prefix: str = "", timeout: float = 0.5
    ) -> None:
        self.url = url
        self.queues = list(queues)
        self.prefix = prefix
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "agent33_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
        )
        keys = [
            [self.prefix + name]
            + [f"{self.prefix}{name}{KOMBU_PRIORITY_SEP}{p}" for p in KOMBU_PRIORITIES]
            for name in self.queues
        ]
        client = redis.Redis.from_url(
            self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )
        try:
            pipe = client.pipeline(transaction=False)
            for key in (k for group in keys for k in group):
                pipe.llen(key)
            lengths = iter(pipe.execute())
        except redis.RedisError as exc:
            log.debug("metrics.queue_depth_failed", error=str(exc))
            return
        finally:
            client.close()
        for name, group in zip(self.queues, keys, strict=True):
            family.add_metric([name], float(sum(next(lengths) for _ in group)))
        yield family


def queue_collector(settings: Settings, queues: Sequence[str]) -> QueueDepthCollector | None:
    """The queue-depth collector for a Redis broker (None for other brokers)."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None
    options = settings.extra.get("broker_transport_options") or {}
    prefix = str(options.get("global_keyprefix", "")) if isinstance(options, dict) else ""
    return QueueDepthCollector(url, queues, prefix)


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def _registry() -> CollectorRegistry:
    """Every process's metrics summed (multiprocess mode), or this process's own."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry(support_collectors_without_names=True)
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(extra: QueueDepthCollector | None = None) -> bytes:
    """The text exposition format of the recorded metrics, plus `extra` read now."""
    body = generate_latest(_registry())
    if extra is not None:
        scraped = CollectorRegistry(support_collectors_without_names=True)
        scraped.register(extra)
        body += generate_latest(scraped)
    return body


def wipe(path: Path) -> None:
    """Empty a multiprocess directory at start: files of processes gone would be summed in."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.glob("*.db"):
        item.unlink(missing_ok=True)


def mark_dead(pid: int) -> None:
    """A child exited: its live gauges go (counters and histograms stay, totals keep rising)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_worker_metrics(settings: Settings) -> None:
    """In a worker's main process, before the pool starts: serve the sum of every pool
    process's metrics on AGENT33_WORKER_METRICS_PORT (from a daemon thread)."""
    path = multiprocess_dir()
    if path is None:
        raise ConfigError(
            "AGENT33_WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: set it "
            "(an empty directory for this worker) in the worker's environment"
        )
    wipe(path)
    registry = CollectorRegistry(support_collectors_without_names=True)
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
    )
    log.info(
        "metrics.worker_exporter",
        host=settings.worker_metrics_host,
        port=settings.worker_metrics_port,
        path=str(path),
    )

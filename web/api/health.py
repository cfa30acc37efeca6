"""`GET /health`: every backing service checked concurrently under one deadline.

Each check has its own short timeouts, and the response waits at most
`settings.health_timeout` for all of them together, so a dead or black-holed service turns
into a `down` entry instead of a hung probe. The thread pool is module-level and reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlparse

import marshmallow as ma
import psycopg
import redis
import requests
from flask.views import MethodView
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import make_url

from agent33.config import Settings
from agent33.db.engine import normalise_url
from agent33.llm.local_model import NO_MODEL_HINT, probe_servers
from agent33.supervision import read_report
from tasks import dispatch
from web.extensions import Blueprint, get_settings

CHECK_TIMEOUT_S = 1.0
ERROR_CHARS = 300

Check = Callable[[Settings], dict[str, Any]]

_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="agent33-health")

blp = Blueprint("health", __name__, description="Liveness of the API and its backing services")


class ServiceSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "up or down"})
    required = ma.fields.Boolean(metadata={"description": "false: reported, never fails /health"})
    latency_ms = ma.fields.Float()
    error = ma.fields.String()
    count = ma.fields.Integer(metadata={"description": "workers: how many answered the ping"})
    server = ma.fields.String(metadata={"description": "model: the model server that answers"})


class ProcessSchema(ma.Schema):
    state = ma.fields.String(metadata={"description": "running or restarting"})
    restarts = ma.fields.Integer(metadata={"description": "restarts since `serve` started"})
    last_restart = ma.fields.String(metadata={"description": "UTC time of the last restart"})
    last_error = ma.fields.String(metadata={"description": "why the last restart failed"})


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "healthy or degraded"})
    down = ma.fields.List(ma.fields.String(), metadata={"description": "required services down"})
    services = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ServiceSchema))
    processes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(ProcessSchema),
        metadata={"description": "under `agent33 serve`: what it supervises and restarted"},
    )


def _postgres_ping(url: str) -> dict[str, Any]:
    conninfo = make_url(normalise_url(url)).set(drivername="postgresql")
    with psycopg.connect(
        conninfo.render_as_string(hide_password=False),
        connect_timeout=1,  # libpq rounds this up to 2 s; the overall deadline still applies
        autocommit=True,
        options="-c statement_timeout=1000",
    ) as conn:
        conn.execute("SELECT 1")
    return {}


def _redis_ping(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(
        url,
        socket_timeout=CHECK_TIMEOUT_S,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    finally:
        client.close()
    return {}


def _kombu_ping(url: str) -> dict[str, Any]:
    from kombu.connection import Connection

    with Connection(url, connect_timeout=CHECK_TIMEOUT_S) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_S)
    return {}


def check_database(settings: Settings) -> dict[str, Any]:
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set")
    return _postgres_ping(settings.database_url)


def check_broker(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    if urlparse(url).scheme in ("redis", "rediss"):
        return _redis_ping(url)
    return _kombu_ping(url)


def check_result_backend(settings: Settings) -> dict[str, Any]:
    url = settings.effective_result_backend
    if url.startswith("db+"):
        return _postgres_ping(url.removeprefix("db+"))
    return _redis_ping(url)


def check_ollama(settings: Settings) -> dict[str, Any]:
    response = requests.get(f"{settings.ollama_base_url}/api/tags", timeout=CHECK_TIMEOUT_S)
    response.raise_for_status()
    return {"count": len(response.json().get("models", []))}


def check_model(settings: Settings) -> dict[str, Any]:
    """Up when any model server answers (the embedded local model first); down naming each."""
    probes = probe_servers(settings, timeout=CHECK_TIMEOUT_S / 2)
    answering = [name for name, error in probes.items() if error is None]
    if answering:
        return {"server": answering[0]}
    tried = "; ".join(f"{name}: {error}" for name, error in probes.items())
    raise RuntimeError(f"no model can answer ({tried}); {NO_MODEL_HINT}")


def check_workers(settings: Settings) -> dict[str, Any]:
    """Ping over an explicit connection that fails fast, so a broker outage cannot hang it."""
    count = dispatch.ping_workers(settings.effective_broker_url, CHECK_TIMEOUT_S)
    if not count:
        raise RuntimeError(f"no worker answered a ping within {CHECK_TIMEOUT_S:g}s")
    return {"count": count}


CHECKS: dict[str, Check] = {
    "database": check_database,
    "broker": check_broker,
    "result_backend": check_result_backend,
    "ollama": check_ollama,
    "model": check_model,
    "workers": check_workers,
}


def describe_failure(exc: Exception) -> str:
    """A failed check in words ("connection refused at 127.0.0.1:11434"), not an exception repr
    with a urllib3 pool object in it."""
    if isinstance(exc, requests.RequestException):
        url = urlparse(str(getattr(exc.request, "url", "") or ""))
        where = url.netloc or "the server"
        if isinstance(exc, requests.Timeout):
            return f"no answer within {CHECK_TIMEOUT_S:g}s from {where}"
        if isinstance(exc, requests.ConnectionError):
            return f"connection refused at {where}"
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return f"HTTP {exc.response.status_code} from {where}{url.path}"
        return f"request to {where} failed"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _timed(check: Check, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = check(settings)
    except Exception as exc:  # every failure is a report, never an error response
        error = describe_failure(exc)[:ERROR_CHARS]
        result: dict[str, Any] = {"status": "down", "error": error}
    else:
        result = {"status": "up", **extra}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def run_checks(settings: Settings, checks: dict[str, Check] | None = None) -> dict[str, Any]:
    """Run the checks concurrently; any not finished by the deadline is reported as a timeout."""
    checks = CHECKS if checks is None else checks
    futures: dict[str, Future[dict[str, Any]]] = {
        name: _executor.submit(_timed, check, settings) for name, check in checks.items()
    }
    wait(futures.values(), timeout=settings.health_timeout)
    services: dict[str, Any] = {}
    for name, future in futures.items():
        if future.done():
            services[name] = future.result()
        else:
            future.cancel()  # drops it if still queued; a running check ends on its own timeouts
            services[name] = {
                "status": "down",
                "error": f"timeout after {settings.health_timeout:g}s",
            }
        services[name]["required"] = name not in settings.health_optional
    down = [n for n, s in services.items() if s["status"] != "up" and s["required"]]
    report: dict[str, Any] = {"status": "degraded" if down else "healthy", "services": services}
    if down:
        report["down"] = down
    return report


@blp.route("/health")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A required service is down")
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Check the API's backing services

        Open to everyone (load balancers, orchestrators). 200 when every required service is
        up, 503 naming the ones that are down; optional services are reported but never fail.
        """
        settings = get_settings()
        report = run_checks(settings)
        processes = read_report(settings.var_dir)
        if processes:
            report["processes"] = processes
        status = 503 if report["status"] != "healthy" else 200
        return report, status, {"Cache-Control": "no-store"}

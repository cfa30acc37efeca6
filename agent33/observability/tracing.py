"""OpenTelemetry traces: one trace per run, from the API request through the broker into each
step delivery and its model and tool calls.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then
`configure` installs a tracer provider exporting over OTLP/HTTP and instruments Celery, whose
instrumentation carries the context in message headers. Off, `span` is a no-op that costs one
dictionary lookup, and nothing is exported. Providers hold an exporter thread, so a forking
process configures tracing in each child (gunicorn workers: the app factory; Celery's prefork
pool: `worker_process_init`).

The outbox publishes some messages later than the request that wrote them (the relay): the
trace context is stored in the outbox payload (`carrier`) and re-attached around the publish
(`attached`), so the run keeps its one trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACER = "agent33"

_state: dict[str, Any] = {}


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process should export traces (an OTLP endpoint is configured)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARS)


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return "provider" in _state


def provider() -> TracerProvider | None:
    found = _state.get("provider")
    return found if isinstance(found, TracerProvider) else None


def configure(service_name: str) -> bool:
    """Export over OTLP/HTTP when an endpoint is configured (once per process); the exporter
    reads the standard OTEL_* variables. Returns whether tracing is on."""
    if enabled():
        return True
    if not wanted():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    created = TracerProvider(resource=Resource.create({"service.name": name}))
    created.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(created)
    return True


def install(tracer_provider: TracerProvider) -> None:
    """Record spans with this provider (tests pass one with an in-memory exporter) and
    instrument Celery's publish and run signals with it."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    trace.set_tracer_provider(tracer_provider)
    _state["provider"] = tracer_provider
    _state["tracer"] = tracer_provider.get_tracer(TRACER)
    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=tracer_provider)


def uninstall() -> None:
    """Stop recording (tests); the global provider stays, as OpenTelemetry allows one."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _state.clear()


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    *,
    current: bool = True,
) -> Iterator[trace.Span | None]:
    """A child span of the current one while tracing is on; None (and no cost) otherwise.
    `current=False`: not made current (a generator's span, whose consumer runs in between)."""
    tracer = _state.get("tracer")
    if tracer is None:
        yield None
        return
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    if current:
        with tracer.start_as_current_span(name, kind=kind, attributes=clean) as made:
            yield made
        return
    made = tracer.start_span(name, kind=kind, attributes=clean)
    try:
        yield made
    except BaseException as exc:
        made.record_exception(exc)
        made.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        raise
    finally:
        made.end()


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`), empty when not tracing."""
    if not enabled():
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def attached(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Run the block in the trace `headers` (from `carrier`) name, when tracing is on: a row
    the relay publishes joins the run's trace, not the relay task's."""
    if not headers or not enabled():
        yield
        return
    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)

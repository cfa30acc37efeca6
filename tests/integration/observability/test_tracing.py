"""One trace per run: the API request, the publish, each step delivery and the model call of a
real `example_agent` run, captured by an in-memory exporter (real broker, real worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import celeryconfig
from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import planner, service
from agent33.engine.outbox import publish_pending
from agent33.observability import tracing
from tests.integration.engine.helpers import save, wait_for
from tests.integration.observability.support import api_and_worker, eventually, run_example_agent

pytestmark = [
    pytest.mark.observability,
    pytest.mark.usefixtures("committed_db", "celery_worker", "stored_workflows"),
]


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of this process (API and in-process worker), exported synchronously."""
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracing.install(provider)
    try:
        yield captured
    finally:
        tracing.uninstall()
        captured.clear()


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def test_a_run_is_one_trace_from_request_to_model_call(
    settings: Settings,
    fake_ollama: Any,
    admin_headers: dict[str, str],
    exporter: InMemorySpanExporter,
) -> None:
    exporter.clear()
    fake_ollama.script(content="Forty-two.")
    with api_and_worker(settings, fake_ollama) as client:
        run_id = run_example_agent(client, admin_headers)

    def complete() -> tuple[ReadableSpan, ...]:
        spans = exporter.get_finished_spans()
        assert _named(spans, "step answer"), [s.name for s in spans]
        assert len(_named(spans, "run/agent33.step.run")) == 2
        return spans

    spans = eventually(complete)
    (request,) = _named(spans, "POST /api/v1/workflows/<string:name>/runs")
    trace_id = request.context.trace_id
    (model,) = _named(spans, "chat ollama/llama3.2")
    (ask,) = _named(spans, "step ask")
    in_run = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in in_run}
    assert {"apply_async/agent33.step.run", "run/agent33.step.run", "step ask", "step answer"} <= (
        names
    )
    assert model.context.trace_id == trace_id
    assert ask.attributes is not None and ask.attributes["agent33.run_id"] == str(run_id)
    assert ask.attributes["agent33.action"] == "invoke_agent"
    assert model.attributes is not None and model.attributes["gen_ai.usage.output_tokens"] > 0
    by_id = {s.context.span_id: s for s in in_run}
    # request -> publish -> delivery -> step -> model call, each the parent of the next
    assert _ancestors(model, by_id)[:3] == [
        "step ask",
        "run/agent33.step.run",
        "apply_async/agent33.step.run",
    ]
    assert request.name in _ancestors(model, by_id)
    publishes = _named(in_run, "apply_async/agent33.step.run")
    assert len(publishes) == 2, "the second step is published from the first one's delivery"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on 127.0.0.1: keeps every exported span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes]] = []  # (service, span name, trace id)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(inner) -> None:  # noqa: N802, N805 - http.server API
                body = inner.rfile.read(int(inner.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            self.spans.append((attrs["service.name"], span.name, span.trace_id))
                inner.send_response(200)
                inner.send_header("Content-Type", "application/x-protobuf")
                inner.send_header("Content-Length", "0")
                inner.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_prefork_worker_exports_over_otlp_in_the_publishers_trace(
    settings: Settings, exporter: InMemorySpanExporter, collector: Collector, tmp_path: Path
) -> None:
    """The endpoint variable alone turns exporting on in a real prefork worker, and the
    context this process publishes with arrives in the message headers."""
    assert settings.database_url and settings.redis_url
    transport = {
        **celeryconfig.build_config(settings)["broker_transport_options"],
        "global_keyprefix": f"otlp-{uuid.uuid4().hex[:8]}:",
    }
    own = settings.replace(extra={"broker_transport_options": transport})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT33_", "OTEL_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        AGENT33_CELERY_EXTRA=json.dumps(dict(own.extra)),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(  # noqa: S603 - a fixed argv
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "steps", "-c", "1"]
            + ["--pool", "prefork", "-n", "otlp@%h", "--loglevel", "WARNING"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        document = {
            "name": "traced_once",
            "inputs": {"type": "object"},
            "steps": [{"id": "only", "action": "transform", "with": {"v": 1}}],
        }
        save(document)
        app = Celery("otlp-publisher")
        app.config_from_object(celeryconfig.build_config(own))
        exporter.clear()
        with session_scope() as session:
            run, outbox_ids, _ = service.start_run(
                session=session, settings=own, workflow_name="traced_once", inputs={}
            )
            run_id = run.id
        publish_pending(outbox_ids=outbox_ids, publisher=lambda p: planner.publish(p, app))
        assert wait_for(run_id, timeout=30).state == "succeeded"
        (published,) = _named(exporter.get_finished_spans(), "apply_async/agent33.step.run")
        trace_id = published.context.trace_id.to_bytes(16, "big")

        def exported() -> None:
            names = {name for service_name, name, tid in collector.spans if tid == trace_id}
            assert {"run/agent33.step.run", "step only"} <= names, collector.spans
            assert {s for s, _, _ in collector.spans} == {"agent33-worker"}

        eventually(exported, timeout=15)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()

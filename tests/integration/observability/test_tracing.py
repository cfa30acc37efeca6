"""One trace per run: the API request, the publish, each step delivery and the model call of a
real `example_agent` run, captured by an in-memory exporter (real broker, real worker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent33.config import Settings
from agent33.observability import tracing
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

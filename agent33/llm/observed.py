"""The span and the metrics of one model call (chat, stream or embed), whoever answers it.

The router wraps every provider call in `model_call`: a span named after the operation and the
model (OpenTelemetry's GenAI attribute names), and the call, token and latency metrics by
provider and model, whether the call succeeded or failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from agent33.llm.types import ChatResponse
from agent33.observability import metrics, tracing


@dataclass
class Call:
    """Filled in by the caller inside the block: the answer (for its token counts), or
    `failed` when it handled the error itself (a fallback to the next model)."""

    response: ChatResponse | None = None
    failed: bool = False


@contextmanager
def model_call(
    operation: str, provider: str, model: str, *, current: bool = True
) -> Iterator[Call]:
    """`current`: the span is the current one inside the block (False for a stream, whose
    consumer runs between chunks)."""
    call = Call()
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
    }
    started = time.perf_counter()
    outcome = "error"
    try:
        with tracing.span(f"{operation} {provider}/{model}", attributes, current=current) as span:
            yield call
            outcome = "error" if call.failed else "ok"
            usage = call.response.usage if call.response is not None else None
            if span is not None and usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
    finally:
        usage = call.response.usage if call.response is not None else None
        metrics.llm_call(
            provider,
            model,
            outcome,
            time.perf_counter() - started,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )

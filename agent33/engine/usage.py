"""Model usage of a run, per step and in total, from its recorded calls.

Counted from `recorded_calls` rather than step outputs so that every call counts: the calls of
failed attempts, fallbacks and map children too. Calls a replay answered from its recording
made no request and cost nothing, so they are left out.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import RecordedCall, RunBudget
from agent33.engine import budgets

FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms", "model_calls")


def _empty() -> dict[str, Any]:
    return {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost": 0.0,
        "latency_ms": 0.0,
        "model_calls": 0,
    }


def run_usage(*, session: Session, run_id: uuid.UUID) -> dict[str, Any]:
    """`{prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, model_calls, steps:
    {step_id: the same}, budget: {...} | None}`; `latency_ms` is time spent in model calls."""
    rows = session.execute(
        select(
            RecordedCall.step_id,
            func.sum(RecordedCall.prompt_tokens),
            func.sum(RecordedCall.completion_tokens),
            func.sum(RecordedCall.cost),
            func.sum(RecordedCall.latency_ms),
            func.count(),
        )
        .where(
            RecordedCall.run_id == run_id,
            RecordedCall.kind == "model",
            RecordedCall.replayed.is_(False),
        )
        .group_by(RecordedCall.step_id)
        .order_by(RecordedCall.step_id)
    ).all()
    total = _empty()
    steps: dict[str, dict[str, Any]] = {}
    for step_id, prompt, completion, cost, latency, calls in rows:
        step = {
            "prompt_tokens": int(prompt or 0),
            "completion_tokens": int(completion or 0),
            "total_tokens": int(prompt or 0) + int(completion or 0),
            "cost": round(float(cost or 0.0), 6),
            "latency_ms": round(float(latency or 0.0), 1),
            "model_calls": int(calls),
        }
        steps[step_id] = step
        for key in FIELDS:
            total[key] += step[key]
    total["cost"] = round(total["cost"], 6)
    total["latency_ms"] = round(total["latency_ms"], 1)
    return {
        **total,
        "steps": steps,
        "budget": budgets.summary(session.get(RunBudget, run_id)),
    }

"""Run-wide token and cost budgets: reserve before a model call, settle after.

One `run_budgets` row per run tree (the root run; map children are steps of it and sub-runs
find it through their parent step). A reservation is one conditional UPDATE, so concurrent
calls from any worker can never reserve past the limit together; settling swaps the
reservation for the real usage. A call that cannot reserve is not made.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import Run, RunBudget, StepRun
from agent33.errors import Agent33Error
from agent33.llm.types import ChatRequest


class BudgetExceeded(Agent33Error):
    """A model call would take the run past its budget: it was not made."""

    code = "budget_exceeded"
    http_status = 409
    retryable = False

    def __init__(self, message: str, *, step_id: str, details: dict[str, Any]) -> None:
        super().__init__(message, fields={"step_id": [step_id]})
        self.details = details


@dataclass(frozen=True)
class Reservation:
    tokens: int
    cost: float


def create(*, session: Session, run_id: uuid.UUID, budget: Mapping[str, Any]) -> RunBudget:
    row = RunBudget(
        run_id=run_id,
        token_limit=budget.get("tokens"),
        cost_limit=budget.get("cost"),
        tokens_reserved=0,
        cost_reserved=0.0,
        tokens_used=0,
        cost_used=0.0,
        on_budget=budget.get("on_budget") or "fail",
    )
    session.add(row)
    return row


def root_run(*, session: Session, run_id: uuid.UUID) -> uuid.UUID:
    """The run at the top of `run_id`'s tree (itself unless it is a sub-run)."""
    seen: set[uuid.UUID] = set()
    while run_id not in seen:
        seen.add(run_id)
        parent_step = session.scalar(select(Run.parent_step_run_id).where(Run.id == run_id))
        if parent_step is None:
            break
        parent_run = session.scalar(select(StepRun.run_id).where(StepRun.id == parent_step))
        if parent_run is None:
            break
        run_id = parent_run
    return run_id


def price(settings: Settings, model: str) -> Mapping[str, float]:
    """Per-1K prices of `model` (`provider/name`, else its bare name); free when unlisted."""
    prices = settings.model_prices
    bare = model.partition("/")[2]
    return prices.get(model) or prices.get(bare) or {"prompt": 0.0, "completion": 0.0}


def cost_of(settings: Settings, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    rates = price(settings, model)
    return (prompt_tokens * rates["prompt"] + completion_tokens * rates["completion"]) / 1000


def estimate(settings: Settings, model: str, request: ChatRequest) -> Reservation:
    """The most a call may use: its prompt (about 4 characters a token, plus a little per
    message) and its `max_tokens`, else AGENT33_BUDGET_RESERVE_TOKENS, of completion."""
    chars = sum(len(m.content) + len(str(m.tool_calls or "")) for m in request.messages)
    chars += sum(len(str(spec.as_function())) for spec in request.tools)
    prompt = math.ceil(chars / 4) + 4 * len(request.messages)
    completion = request.options.max_tokens or settings.budget_reserve_tokens
    return Reservation(prompt + completion, cost_of(settings, model, prompt, completion))


def reserve(*, session: Session, run_id: uuid.UUID, amount: Reservation) -> bool:
    """Atomically add `amount` to the reservations unless that would pass a limit."""
    reserved = session.execute(
        update(RunBudget)
        .where(
            RunBudget.run_id == run_id,
            (RunBudget.token_limit.is_(None))
            | (RunBudget.tokens_reserved + amount.tokens <= RunBudget.token_limit),
            (RunBudget.cost_limit.is_(None))
            | (RunBudget.cost_reserved + amount.cost <= RunBudget.cost_limit),
        )
        .values(
            tokens_reserved=RunBudget.tokens_reserved + amount.tokens,
            cost_reserved=RunBudget.cost_reserved + amount.cost,
        )
        .returning(RunBudget.run_id)
        .execution_options(synchronize_session=False)
    ).first()
    return reserved is not None


def settle(
    *, session: Session, run_id: uuid.UUID, amount: Reservation, tokens: int, cost: float
) -> None:
    """Swap the reservation for what the call really used (0 when it failed)."""
    session.execute(
        update(RunBudget)
        .where(RunBudget.run_id == run_id)
        .values(
            tokens_reserved=RunBudget.tokens_reserved - amount.tokens + tokens,
            cost_reserved=RunBudget.cost_reserved - amount.cost + cost,
            tokens_used=RunBudget.tokens_used + tokens,
            cost_used=RunBudget.cost_used + cost,
        )
        .execution_options(synchronize_session=False)
    )


def summary(row: RunBudget | None) -> dict[str, Any] | None:
    """The budget as `GET /runs/<id>` shows it."""
    if row is None:
        return None
    return {
        "tokens": row.token_limit,
        "cost": row.cost_limit,
        "on_budget": row.on_budget,
        "tokens_used": row.tokens_used,
        "cost_used": round(float(row.cost_used), 6),
        "tokens_reserved": row.tokens_reserved,
    }

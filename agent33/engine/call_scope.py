"""The `CallHooks` of one step attempt: record each call, answer it from a recording when the
run is a replay, and hold each model request against the run's budget.

Installed by the runner around a step's action (see `agent33.llm.hooks`). What it needs from
the database (is this run a replay, which budget applies) is read on the first call, so steps
that call nothing pay nothing. Every row is written in a transaction of its own, at once: a
recording or a reservation must survive the step failing afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import RecordedCall, RunBudget, RunReplay
from agent33.engine import budgets, recording
from agent33.errors import Agent33Error
from agent33.llm import hooks
from agent33.llm.types import ChatRequest, ChatResponse


class ReplayMismatch(Agent33Error):
    """A strict replay met a call its recording does not have (a changed prompt or code)."""

    code = "replay_mismatch"
    http_status = 409
    retryable = False


@dataclass
class _Recorded:
    """The source run's calls for this step, each usable once."""

    source: uuid.UUID
    strict: bool
    calls: list[RecordedCall]
    used: set[int] = field(default_factory=set)

    def take(self, kind: str, request_hash: str) -> RecordedCall | None:
        for call in self.calls:
            if call.id not in self.used and call.kind == kind and call.request_hash == request_hash:
                self.used.add(call.id)
                return call
        return None


class StepCalls:
    """Hooks for one attempt of one step (see the module docstring)."""

    def __init__(self, settings: Settings, run_id: uuid.UUID, step_id: str, attempt: int) -> None:
        self.settings = settings
        self.run_id, self.step_id, self.try_number = run_id, step_id, attempt
        self.sequence = 0
        self._loaded = False
        self.replay: _Recorded | None = None
        self.budget_run: uuid.UUID | None = None
        self.on_budget = "fail"

    def _load(self) -> None:
        if self._loaded:
            return
        with session_scope() as session:
            link = session.get(RunReplay, self.run_id)
            if link is not None:
                calls = recording.final_attempt(
                    session=session, run_id=link.source_run_id, step_id=self.step_id
                )
                session.expunge_all()
                self.replay = _Recorded(link.source_run_id, link.strict, calls)
            root = budgets.root_run(session=session, run_id=self.run_id)
            policy = session.scalar(select(RunBudget.on_budget).where(RunBudget.run_id == root))
            if policy is not None:
                self.budget_run, self.on_budget = root, policy
        self._loaded = True

    def _next(self) -> int:
        sequence, self.sequence = self.sequence, self.sequence + 1
        return sequence

    def _write(self, **row: Any) -> None:
        if not self.settings.record_calls:
            return
        # A tool may return values JSON only knows as text (a datetime): store them as such.
        row["response"] = json.loads(json.dumps(row["response"], default=str))
        row["request"] = json.loads(json.dumps(row["request"], default=str))
        with session_scope() as session:
            recording.add(
                session=session,
                run_id=self.run_id,
                step_id=self.step_id,
                attempt=self.try_number,
                **row,
            )

    def _missing(self, what: str, sequence: int) -> ReplayMismatch:
        assert self.replay is not None
        return ReplayMismatch(
            f"step {self.step_id!r}: {what} (call {sequence}) was not recorded in run "
            f"{self.replay.source}: its request differs from every recorded call of the step",
            fields={"step_id": [self.step_id]},
        )

    def model(self, request: ChatRequest, send: Callable[[], ChatResponse]) -> ChatResponse:
        self._load()
        sequence = self._next()
        payload = recording.request_json(request)
        request_hash = recording.digest(payload)
        recorded = self.replay.take("model", request_hash) if self.replay else None
        if recorded is not None:
            response = recording.response_of(recorded.response)
        elif self.replay is not None and self.replay.strict:
            raise self._missing(
                f"the model call to {request.model or 'the default model'}", sequence
            )
        else:
            response = send()
        usage = response.usage
        model = f"{response.provider}/{response.model.removesuffix(':latest')}"
        # An answer from the recording was paid for by the original run, not this one.
        cost = 0.0
        if recorded is None:
            cost = budgets.cost_of(
                self.settings, model, usage.prompt_tokens, usage.completion_tokens
            )
        self._write(
            sequence=sequence,
            kind="model",
            name=request.model or model,
            request_hash=request_hash,
            request=payload,
            response=recording.response_json(response),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=cost,
            latency_ms=response.latency_ms,
            replayed=recorded is not None,
        )
        return response

    def attempt(
        self, model: str, request: ChatRequest, send: Callable[[], ChatResponse]
    ) -> ChatResponse:
        self._load()
        if self.budget_run is None:
            return send()
        amount = budgets.estimate(self.settings, model, request)
        with session_scope() as session:
            ok = budgets.reserve(session=session, run_id=self.budget_run, amount=amount)
        if not ok:
            raise budgets.BudgetExceeded(
                f"step {self.step_id!r}: a call to {model} (up to {amount.tokens} tokens) would "
                f"pass the run's budget; it was not made",
                step_id=self.step_id,
                details={"on_budget": self.on_budget, "tokens": amount.tokens, "cost": amount.cost},
            )
        tokens, cost = 0, 0.0
        try:
            response = send()
            usage = response.usage
            tokens = usage.total_tokens
            cost = budgets.cost_of(
                self.settings, model, usage.prompt_tokens, usage.completion_tokens
            )
            return response
        finally:
            with session_scope() as session:
                budgets.settle(
                    session=session, run_id=self.budget_run, amount=amount, tokens=tokens, cost=cost
                )

    def tool(self, name: str, arguments: Any, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self._load()
        sequence = self._next()
        payload = recording.tool_request(name, arguments)
        request_hash = recording.digest(payload)
        recorded = self.replay.take("tool", request_hash) if self.replay else None
        if recorded is not None:
            result = dict(recorded.response)
        elif self.replay is not None and self.replay.strict:
            raise self._missing(f"the call of tool {name!r}", sequence)
        else:
            result = run()
        self._write(
            sequence=sequence,
            kind="tool",
            name=name[:200],
            request_hash=request_hash,
            request=payload,
            response=result,
            latency_ms=float(result.get("duration_ms") or 0),
            replayed=recorded is not None,
        )
        return result


@contextmanager
def step_calls(
    settings: Settings, run_id: uuid.UUID, step_id: str, attempt: int
) -> Iterator[StepCalls]:
    """Install the hooks of one step attempt for the block (and threads copying its context)."""
    calls = StepCalls(settings, run_id, step_id, attempt)
    with hooks.installed(calls):
        yield calls

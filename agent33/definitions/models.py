"""Frozen, typed definitions the engine works with (built from validated documents)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """`max` further attempts after the first, `backoff ** (n - 1)` seconds (with jitter,
    capped at `max_delay`) before attempt n + 1; `on`: the error types worth retrying."""

    max: int = 0
    backoff: float = 2.0
    max_delay: float = 300.0
    on: tuple[str, ...] = ()

    def allows(self, error: dict[str, Any]) -> bool:
        """Whether this error may be retried (attempts aside). Without `on`, what the error says
        of itself (`retryable`); with `on`, exactly the listed types: a user who names a type
        knows that retrying it helps, and every other error fails at once."""
        if self.on:
            return str(error.get("type")) in self.on
        return bool(error.get("retryable", True))


@dataclass(frozen=True)
class ConcurrencyPolicy:
    """At most `limit` runs of one workflow share a `key` (an expression over the inputs)
    at once; the others wait, queued, in creation order."""

    key: str
    limit: int = 1


@dataclass(frozen=True)
class StepDef:
    id: str
    action: str
    depends_on: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    when: str | None = None
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    on_error: str = "fail"
    queue: str | None = None

    @property
    def fallback(self) -> str | None:
        """The step `on_error` names to run in this one's place, if it names one."""
        return None if self.on_error in ("fail", "continue") else self.on_error


@dataclass(frozen=True)
class WorkflowDef:
    name: str
    version: int
    description: str
    inputs: dict[str, Any]
    steps: tuple[StepDef, ...]
    outputs: dict[str, Any]
    # `schedules:` entries as written; agent33.automation checks and stores them (synced when
    # the workflow is stored).
    schedules: tuple[dict[str, Any], ...] = ()
    # `retention: {days: N}`: days its finished runs are kept (None: the setting's default).
    retention_days: float | None = None
    concurrency: ConcurrencyPolicy | None = None
    # `budget:` and `on_budget:` as {tokens, cost, on_budget}: see agent33.engine.budgets.
    budget: dict[str, Any] | None = None

    @cached_property
    def by_id(self) -> dict[str, StepDef]:
        return {s.id: s for s in self.steps}

    @cached_property
    def dependents(self) -> dict[str, tuple[str, ...]]:
        """Step id -> ids of the steps that depend on it, in definition order."""
        found: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for step in self.steps:
            for dep in step.depends_on:
                found[dep].append(step.id)
        return {k: tuple(v) for k, v in found.items()}

    @cached_property
    def fallbacks(self) -> frozenset[str]:
        """Steps named by another step's `on_error`: dormant until that step fails."""
        return frozenset(s.fallback for s in self.steps if s.fallback is not None)

    def step(self, step_id: str) -> StepDef:
        return self.by_id[step_id]

"""Frozen, typed definitions the engine works with (built from validated documents)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    max: int = 0
    backoff: float = 2.0
    max_delay: float = 300.0


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


@dataclass(frozen=True)
class WorkflowDef:
    name: str
    version: int
    description: str
    inputs: dict[str, Any]
    steps: tuple[StepDef, ...]
    outputs: dict[str, Any]

    def step(self, step_id: str) -> StepDef:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

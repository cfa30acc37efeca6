"""What an action may return besides a plain output: requests the runner carries out durably."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AwaitApproval:
    """Park the step (no lease, no worker held) until `POST /runs/<id>/approve` answers it."""

    prompt: str = ""


@dataclass(frozen=True)
class Defer:
    """Run the step again at `until` without holding a worker (durable `wait: {seconds}`)."""

    until: dt.datetime


@dataclass(frozen=True)
class FanOut:
    """Spawn child steps (`key`, `item`) as a chord; the parent finishes when all children do."""

    children: list[tuple[str, Any]] = field(default_factory=list)
    kind: str = "map"  # "map": output is a list in order; "branches": a mapping by key


@dataclass(frozen=True)
class StartSubRun:
    """Start a child run of another workflow; the step finishes with the child run."""

    workflow: str
    inputs: dict[str, Any]
    version: int | None = None


Special = AwaitApproval | Defer | FanOut | StartSubRun


@dataclass
class Outcome:
    """What the task does next: publish these outbox rows; `status` is for logs and tests."""

    status: str
    outbox_ids: list[int] = field(default_factory=list)

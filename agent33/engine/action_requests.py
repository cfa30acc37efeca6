"""Requests an action may return instead of a plain output; the runner carries them out durably
(`request_handlers`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AwaitApproval:
    """Park the step (no lease, no worker held) until `POST /runs/<id>/approve` answers it.

    With `tool_call` (an agent's proposed call of an approval-required tool) the answer runs
    the step again with the decision, and `resume` (the parked conversation) continues."""

    prompt: str = ""
    tool_call: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None


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

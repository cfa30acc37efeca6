"""What one delivery of a step ends with: the outbox rows to publish after the commit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What the task does next: publish these outbox rows; `status` is for logs and tests."""

    status: str
    outbox_ids: list[int] = field(default_factory=list)

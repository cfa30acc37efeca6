"""Publish committed outbox rows to the broker (the only place `web` touches Celery)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent33.engine import planner
from agent33.engine.outbox import publish_pending


def _publish(payload: Mapping[str, Any]) -> None:
    from tasks.app import app

    planner.publish(payload, app)


def flush_outbox(outbox_ids: Sequence[int]) -> int:
    """Publish these outbox rows now; never raises on a broker outage (beat's relay retries)."""
    if not outbox_ids:
        return 0
    return publish_pending(outbox_ids=list(outbox_ids), publisher=_publish)

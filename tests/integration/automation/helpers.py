"""A workflow sensors can start, and how tests count the runs a sensor started."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from agent33.db import session_scope
from agent33.db.models import Run

ON_FILE: dict[str, Any] = {
    "name": "on_file",
    "version": 1,
    "inputs": {
        "type": "object",
        "required": ["path", "change"],
        "properties": {"path": {"type": "string"}, "change": {"type": "string"}},
        "additionalProperties": False,
    },
    "steps": [{"id": "note", "action": "transform", "with": {"seen": "{{ inputs.path }}"}}],
}


def runs_by(sensor: str) -> list[Run]:
    """Runs a sensor started, oldest first (by the trigger the run records)."""
    with session_scope() as session:
        runs = session.scalars(select(Run).order_by(Run.created_at))
        return [r for r in runs if (r.trigger or {}).get("sensor") == sensor]

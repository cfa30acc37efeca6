"""`agent33.run.finalize`: the chord body that joins a `parallel_group` (idempotent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from agent33.engine import segments
from agent33.wire import TaskName
from tasks.app import app
from tasks.dispatch import flush_outbox


@app.task(
    name=TaskName.RUN_FINALIZE.value,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
)
def finalize(*_results: Any, step_run_id: str) -> dict[str, Any]:
    """Close the parent step when its children all ended; the DB barrier decides, not Celery."""
    outcome = segments.finalize_parent(step_run_id)
    flush_outbox(outcome.outbox_ids)
    return {"status": outcome.status}

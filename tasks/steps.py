"""`agent33.step.run`: a thin wrapper around the engine runner."""

from __future__ import annotations

from typing import Any

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from agent33.engine import runner, segments
from agent33.wire import TaskName
from tasks.app import app, current_settings
from tasks.dispatch import flush_outbox


@app.task(
    name=TaskName.STEP_RUN.value,
    bind=True,
    ignore_result=True,  # state lives in PostgreSQL; chord counting still works without results
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=10,
)
def run(
    self: Task, step_run_id: str, then: list[str] | None = None, batch: list[str] | None = None
) -> dict[str, Any]:
    """Execute one step delivery, a fused segment (`then`: the steps following in line) or a
    batch of ready siblings (`batch`: the others); database outages retry the delivery, and
    steps already recorded are then skipped as duplicates."""
    settings = current_settings()
    if then:
        outcome = segments.run_segment(step_run_id, then, settings, self.request.id, flush_outbox)
    elif batch:
        outcome = segments.run_batch([step_run_id, *batch], settings, self.request.id, flush_outbox)
    else:
        outcome = runner.run_step(step_run_id, settings, task_id=self.request.id)
        flush_outbox(outcome.outbox_ids)
    return {"status": outcome.status}

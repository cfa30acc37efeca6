"""What the run page shows of a run, computed once for the page and for each live update.

A step waiting for a person shows as `waiting` (stored: `running` with `waiting_for`), so the
page can offer approve/reject exactly when the API's approve would accept it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from agent33.db.models import Run, RunEvent, StepRun
from agent33.engine.service import get_run, list_events
from agent33.engine.states import RUN_TERMINAL, RunState
from web.dashboard.dag import StepShape

APPROVAL = "approval"
EVENTS_SHOWN = 500  # the newest ones; a run's full log stays in the API and the CLI


def display_state(step: StepRun) -> str:
    """The state as a person reads it: a step parked on an approval or a signal is `waiting`."""
    return "waiting" if step.waiting_for else step.state


def model_calls(step: StepRun) -> list[dict[str, Any]]:
    """The model calls an agent step recorded (provider, model, tokens, latency), if any."""
    output = step.output if isinstance(step.output, dict) else {}
    calls = output.get("calls")
    return [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []


def step_view(step: StepRun) -> dict[str, Any]:
    """One step as JSON-ready data (the live stream sends exactly this)."""
    return {
        "step_id": step.step_id,
        "action": step.action,
        "state": display_state(step),
        "awaiting_approval": step.waiting_for == APPROVAL,
        "attempt": step.attempt,
        "deliveries": step.deliveries,
        "inputs": step.inputs,
        "output": step.output,
        "error": step.error,
        "queue": step.queue,
        "worker": step.worker,
        "model_calls": model_calls(step),
        "started_at": step.started_at.isoformat() if step.started_at else None,
        "finished_at": step.finished_at.isoformat() if step.finished_at else None,
    }


def event_view(event: RunEvent) -> dict[str, Any]:
    """One event-log line: when, what, which step, to which state, why."""
    return {
        "at": event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": event.kind,
        "step_id": event.step_id,
        "to_state": event.to_state,
        "message": event.message,
    }


def events_of(*, session: Session, run_id: uuid.UUID) -> list[dict[str, Any]]:
    return [event_view(event) for event in list_events(session=session, run_id=run_id)][
        -EVENTS_SHOWN:
    ]


def top_level(run: Run) -> list[StepRun]:
    """The run's own steps in definition order (map and parallel children are not drawn)."""
    return sorted((s for s in run.steps if s.parent_id is None), key=lambda s: s.position)


def shapes(run: Run) -> list[StepShape]:
    return [StepShape(s.step_id, s.action, tuple(s.depends_on or ())) for s in top_level(run)]


def snapshot(*, session: Session, run_id: uuid.UUID) -> dict[str, Any]:
    """The run's state, outputs and every step's view; raises NotFound."""
    run = get_run(session=session, run_id=run_id)
    return {
        "id": str(run.id),
        "state": run.state,
        "terminal": RunState(run.state) in RUN_TERMINAL,
        "outputs": run.outputs,
        "error": run.error,
        "steps": [step_view(step) for step in sorted(run.steps, key=lambda s: s.position)],
        "events": events_of(session=session, run_id=run_id),
    }

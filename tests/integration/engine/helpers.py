"""Start workflows given as dicts, and wait for runs, through the real broker and worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.definitions.loader import parse_workflow
from agent33.definitions.registry import save_workflow, sync_directory
from agent33.engine import service
from agent33.engine.validation import validate_workflow
from tasks.app import current_settings
from tasks.dispatch import flush_outbox

TERMINAL = ("succeeded", "failed", "cancelled")


def save(document: dict[str, Any]) -> None:
    workflow = parse_workflow(document)
    validate_workflow(workflow)
    with session_scope() as session:
        save_workflow(session=session, workflow=workflow, document=document)


def start(document: dict[str, Any], inputs: dict[str, Any] | None = None) -> uuid.UUID:
    save(document)
    return _start_run(document["name"], inputs or {})


def start_shipped(
    settings: Settings, name: str, inputs: dict[str, Any], **options: Any
) -> uuid.UUID:
    """Store the shipped definitions (validated), then start the workflow `name`."""
    with session_scope() as session:
        sync_directory(
            session=session, directory=settings.definitions_dir, validator=validate_workflow
        )
    return _start_run(name, inputs, **options)


def _start_run(name: str, inputs: dict[str, Any], **options: Any) -> uuid.UUID:
    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session,
            settings=current_settings(),
            workflow_name=name,
            inputs=inputs,
            **options,
        )
        run_id = run.id
    flush_outbox(outbox_ids)
    return run_id


def wait_for(run_id: uuid.UUID, states: Iterable[str] = TERMINAL, timeout: float = 30.0) -> Run:
    wanted = set(states)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with session_scope() as session:
            run = service.get_run(session=session, run_id=run_id)
            last = (run.state, {s.step_id: s.state for s in run.steps})
            if run.state in wanted:
                return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {last}, not {sorted(wanted)} after {timeout}s")


def steps_of(run: Run) -> dict[str, Any]:
    return {s.step_id: s for s in run.steps}


def events_of(run_id: uuid.UUID) -> list[Any]:
    with session_scope() as session:
        return service.list_events(session=session, run_id=run_id)

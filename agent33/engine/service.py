"""Starting and reading runs: the entry points of the API, the CLI and sub-workflow steps.

Each takes `session=` and never commits; the caller publishes the returned outbox ids after its
commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from agent33.config import Settings
from agent33.db.models import Run, RunEvent, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.definitions.registry import definition_of, get_workflow
from agent33.engine import admission, budgets, readiness, routes, store
from agent33.engine.states import RunState, StepState
from agent33.errors import NotFound, ValidationFailed
from agent33.llm.router import Route
from agent33.observability import metrics
from agent33.wire import MAX_PRIORITY


def start_run(
    *,
    session: Session,
    settings: Settings,
    workflow_name: str,
    inputs: dict[str, Any],
    version: int | None = None,
    idempotency_key: str | None = None,
    created_by: str | None = None,
    parent_step_run_id: uuid.UUID | None = None,
    trigger: dict[str, Any] | None = None,
    priority: int = 0,
    budget: dict[str, Any] | None = None,
) -> tuple[Run, list[int], bool]:
    """Create a run, its steps (pending) and the outbox row for the first ready segment.

    Returns (run, outbox_ids_to_flush_after_commit, created). With a repeated idempotency key
    returns the existing run, no outbox ids and created=False. `parent_step_run_id`: the
    `sub_workflow` step this run finishes. `trigger`: what started it when no caller did (a
    schedule's slot, a sensor, an event), recorded on the run. `priority`: 0 (default) to 9
    (most urgent), how the broker orders this run's step messages. A workflow with
    `concurrency:` whose key is at its limit gets a `queued` run (no outbox ids): it starts
    when a run of its key ends (see `admission`). `budget`: {tokens, cost, on_budget} for this
    run instead of the workflow's (a sub-run spends its root run's).
    Raises NotFound (unknown workflow) or ValidationFailed (inputs do not match the schema;
    `fields` maps `inputs.<path>` to messages).
    """
    if idempotency_key:
        existing = session.scalar(select(Run).where(Run.idempotency_key == idempotency_key))
        if existing is not None:
            return existing, [], False
    row = get_workflow(session=session, name=workflow_name, version=version)
    workflow = definition_of(row)
    validate_inputs(workflow, inputs)
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValidationFailed(
            f"priority: must be between 0 and {MAX_PRIORITY}", fields={"priority": ["0-9"]}
        )
    concurrency = admission.key_of(workflow, inputs)
    run = Run(
        workflow_id=row.id,
        workflow_name=row.name,
        workflow_version=row.version,
        state=RunState.PENDING.value,
        inputs=inputs,
        idempotency_key=idempotency_key,
        created_by=created_by,
        parent_step_run_id=parent_step_run_id,
        trigger=trigger,
        priority=priority,
        concurrency_key=concurrency[0] if concurrency else None,
        concurrency_limit=concurrency[1] if concurrency else None,
    )
    if concurrency is not None and not admission.may_start(
        session=session, workflow_name=row.name, key=concurrency[0], limit=concurrency[1]
    ):
        run.state = RunState.QUEUED.value
    decided: dict[str, Route] = {}
    for position, step in enumerate(workflow.steps):
        queue, route = routes.plan(session, settings, workflow, step.id)
        if route is not None:
            decided[step.id] = route
        run.steps.append(
            StepRun(
                step_id=step.id,
                position=position,
                action=step.action,
                state=StepState.PENDING.value,
                depends_on=list(step.depends_on),
                queue=queue,
            )
        )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = session.scalar(select(Run).where(Run.idempotency_key == idempotency_key))
        assert existing is not None
        return existing, [], False
    limits = budget or workflow.budget
    if limits is not None and parent_step_run_id is None:
        budgets.create(session=session, run_id=run.id, budget=limits)
    store.add_event(
        session=session,
        run_id=run.id,
        kind="run.created",
        to_state=run.state,
        data={
            "workflow": row.name,
            "version": row.version,
            **({"concurrency_key": run.concurrency_key} if run.concurrency_key else {}),
            **({"priority": priority} if priority else {}),
        },
    )
    routes.record(session=session, run_id=run.id, decided=decided)
    metrics.after_commit(session.info, metrics.run_started, row.name)
    if run.state == RunState.QUEUED:
        return run, [], True
    outbox_ids = readiness.dispatch_ready(session=session, run=run, workflow=workflow)
    return run, outbox_ids, True


def validate_inputs(workflow: WorkflowDef, inputs: dict[str, Any]) -> None:
    """Inputs against the workflow's JSON Schema; errors keyed `inputs.<path>`."""
    # An empty registry: a `$ref` to a remote URL must not make the engine fetch it.
    validator = Draft202012Validator(workflow.inputs, registry=Registry())
    errors = sorted(validator.iter_errors(inputs), key=str)
    if errors:
        fields: dict[str, list[str]] = {}
        for error in errors:
            path = ".".join(str(p) for p in error.absolute_path)
            fields.setdefault(f"inputs.{path}" if path else "inputs", []).append(error.message)
        first = next(iter(fields))
        raise ValidationFailed(f"{first}: {fields[first][0]}", fields=fields)


def get_run(*, session: Session, run_id: uuid.UUID) -> Run:
    """The run with its steps loaded; NotFound when absent."""
    run = session.scalar(select(Run).where(Run.id == run_id).options(selectinload(Run.steps)))
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    return run


def list_events(*, session: Session, run_id: uuid.UUID) -> list[RunEvent]:
    return list(
        session.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))
    )


def list_runs(
    *,
    session: Session,
    workflow: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """A page of runs (newest first) and the total count matching the filters."""
    query = select(Run)
    if workflow:
        query = query.where(Run.workflow_name == workflow)
    if state:
        query = query.where(Run.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Run.created_at.desc()).limit(limit).offset(offset))
    return list(rows), int(total)

"""Run and step persistence: transitions with events, ready-step planning, run completion.

Every function takes `session=` and never commits; the caller's `session_scope` is the boundary.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Set
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent33.db.base import utcnow
from agent33.db.models import AgentDefinition, OutboxMessage, Run, RunEvent, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.registry import definition_of, get_workflow
from agent33.engine import planner
from agent33.engine.states import (
    RUN_TERMINAL,
    STEP_DONE_OK,
    STEP_TERMINAL,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from agent33.errors import NotFound, ValidationFailed
from agent33.wire import Queue


def add_event(
    *,
    session: Session,
    run_id: uuid.UUID,
    kind: str,
    step_id: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        RunEvent(
            run_id=run_id,
            step_id=step_id,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            message=message,
            data=data,
        )
    )


def set_run_state(
    *, session: Session, run: Run, target: RunState, message: str | None = None
) -> None:
    check_run_transition(run.state, target)
    add_event(
        session=session,
        run_id=run.id,
        kind="run.state",
        from_state=run.state,
        to_state=target.value,
        message=message,
    )
    run.state = target.value
    now = utcnow()
    if target is RunState.RUNNING and run.started_at is None:
        run.started_at = now
    if target in RUN_TERMINAL:
        run.finished_at = now


def set_step_state(
    *,
    session: Session,
    step: StepRun,
    target: StepState,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    check_step_transition(step.step_id, step.state, target)
    add_event(
        session=session,
        run_id=step.run_id,
        step_id=step.step_id,
        kind="step.state",
        from_state=step.state,
        to_state=target.value,
        message=message,
        data=data,
    )
    step.state = target.value
    now = utcnow()
    if target is StepState.QUEUED:
        step.queued_at = now
    elif target is StepState.RUNNING:
        step.started_at = now
    elif target in STEP_TERMINAL:
        step.finished_at = now
        step.lease_expires_at = None


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


def step_queue(session: Session, workflow: WorkflowDef, step_id: str) -> str:
    """The step's own queue; a model call goes to its agent's queue (`llm` or `llm.gpu`),
    everything else to `steps`."""
    step = workflow.step(step_id)
    if step.queue:
        return step.queue
    if step.action != "invoke_agent":
        return Queue.STEPS.value
    agent = step.params.get("agent")
    if isinstance(agent, str) and "{" not in agent:
        spec = session.scalar(
            select(AgentDefinition.spec)
            .where(AgentDefinition.name == agent)
            .order_by(AgentDefinition.version.desc())
            .limit(1)
        )
        if isinstance(spec, dict) and spec.get("queue"):
            return str(spec["queue"])
        if isinstance(spec, dict) and _on_gpu(str(spec.get("model", ""))):
            return Queue.LLM_GPU.value
    return Queue.LLM.value


def _on_gpu(model: str) -> bool:
    """Whether AGENT33_LLM_GPU_MODELS names this model (with or without `ollama/`, `:latest`)."""
    from agent33.config import load_settings

    def bare(name: str) -> str:
        name = name.removeprefix("ollama/")
        return name.removesuffix(":latest")

    return bare(model) in {bare(m) for m in load_settings().llm_gpu_models}


def create_run(
    *,
    session: Session,
    workflow_name: str,
    inputs: dict[str, Any],
    version: int | None = None,
    idempotency_key: str | None = None,
    created_by: str | None = None,
    parent_step_run_id: uuid.UUID | None = None,
) -> tuple[Run, list[int], bool]:
    """Insert the run, all its steps (pending) and the outbox row for the first ready segment."""
    if idempotency_key:
        existing = session.scalar(select(Run).where(Run.idempotency_key == idempotency_key))
        if existing is not None:
            return existing, [], False
    row = get_workflow(session=session, name=workflow_name, version=version)
    workflow = definition_of(row)
    validate_inputs(workflow, inputs)
    run = Run(
        workflow_id=row.id,
        workflow_name=row.name,
        workflow_version=row.version,
        state=RunState.PENDING.value,
        inputs=inputs,
        idempotency_key=idempotency_key,
        created_by=created_by,
        parent_step_run_id=parent_step_run_id,
    )
    for position, step in enumerate(workflow.steps):
        run.steps.append(
            StepRun(
                step_id=step.id,
                position=position,
                action=step.action,
                state=StepState.PENDING.value,
                depends_on=list(step.depends_on),
                queue=step_queue(session, workflow, step.id),
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
    add_event(
        session=session,
        run_id=run.id,
        kind="run.created",
        to_state=run.state,
        data={"workflow": row.name, "version": row.version},
    )
    outbox_ids = dispatch_ready(session=session, run=run, workflow=workflow)
    return run, outbox_ids, True


def step_states(
    *, session: Session, run_id: uuid.UUID, only: Iterable[str] | None = None
) -> dict[str, str]:
    """Top-level step id -> state as plain tuples (optionally only some steps): the hot path
    never loads every step row of a run."""
    query = select(StepRun.step_id, StepRun.state).where(
        StepRun.run_id == run_id, StepRun.parent_id.is_(None)
    )
    if only is not None:
        wanted = list(only)
        if not wanted:
            return {}
        query = query.where(StepRun.step_id.in_(wanted))
    return {step_id: state for step_id, state in session.execute(query)}


WIDE_FAN_IN = 8
UNFINISHED = (
    StepState.PENDING.value,
    StepState.QUEUED.value,
    StepState.RUNNING.value,
    StepState.RETRYING.value,
)


def _blocked_joins(
    session: Session, run_id: uuid.UUID, workflow: WorkflowDef, finished: str
) -> set[str]:
    """Wide joins of `finished` that still wait for some dependency, found with one COUNT each
    instead of reading every dependency's row on every branch's completion."""
    blocked = set()
    for dependent in workflow.dependents[finished]:
        deps = workflow.step(dependent).depends_on
        if len(deps) <= WIDE_FAN_IN:
            continue
        waiting = session.scalar(
            select(StepRun.id)
            .where(
                StepRun.run_id == run_id,
                StepRun.parent_id.is_(None),
                StepRun.state.in_(UNFINISHED),
                StepRun.step_id == any_(bindparam("deps", list(deps), type_=ARRAY(String))),
            )
            .limit(1)
        )
        if waiting is not None:
            blocked.add(dependent)
    return blocked


SEGMENT_LOOKAHEAD = 64


def neighbourhood(
    workflow: WorkflowDef, finished: str, blocked: Set[str] = frozenset()
) -> set[str]:
    """Steps whose readiness can change when `finished` ends: its dependents, their other
    dependencies (and fallbacks), and the linear chains a segment could grow along, read at
    most SEGMENT_LOOKAHEAD steps ahead. The planner ends a segment at the first step it was
    not given, so a longer chain goes out in pieces, each dispatched when the piece before it
    ends, and finishing a step in a 5,000-step chain reads as much as in a short one."""
    relevant = {finished}
    for dependent in workflow.dependents[finished]:
        if dependent in blocked:
            continue
        relevant.add(dependent)
        for dep in workflow.step(dependent).depends_on:
            relevant.add(dep)
            relevant.add(workflow.step(dep).on_error)
        current = dependent
        for _ in range(SEGMENT_LOOKAHEAD):
            if len(workflow.dependents[current]) != 1:
                break
            current = workflow.dependents[current][0]
            if current in relevant:
                break
            relevant.add(current)
    return relevant & set(workflow.by_id)


def satisfied(states: dict[str, str], workflow: WorkflowDef) -> set[str]:
    """Top-level steps their dependents may proceed after."""
    ok = {sid for sid, st in states.items() if st in STEP_DONE_OK}
    for sid, state in states.items():
        if state != StepState.FAILED:
            continue
        on_error = workflow.step(sid).on_error
        if on_error == "continue" or states.get(on_error) == StepState.SUCCEEDED:
            ok.add(sid)
    return ok


def dispatch_ready(
    *, session: Session, run: Run, workflow: WorkflowDef, after: str | None = None
) -> list[int]:
    """Queue every pending step whose dependencies are done, as chains of linear segments.

    With `after` (a step that just ended) only its neighbourhood is read, so finishing a step
    costs the same in a run of 5 steps or 5,000.
    """
    only = None
    if after is not None:
        only = neighbourhood(workflow, after, _blocked_joins(session, run.id, workflow, after))
    states = step_states(session=session, run_id=run.id, only=only)
    segments = planner.ready_segments(
        workflow,
        {k: StepState(v) for k, v in states.items()},
        satisfied(states, workflow),
        workflow.fallbacks,
    )
    if not segments:
        return []
    wanted = [step_id for segment in segments for step_id in segment]
    steps = {
        s.step_id: s
        for s in session.scalars(
            select(StepRun).where(
                StepRun.run_id == run.id,
                StepRun.parent_id.is_(None),
                StepRun.step_id.in_(wanted),
            )
        )
    }
    payload_segments = []
    for segment in segments:
        entries = []
        for step_id in segment:
            step = steps[step_id]
            set_step_state(session=session, step=step, target=StepState.QUEUED)
            entries.append(planner.entry(step, workflow.step(step_id)))
        payload_segments.append(entries)
    return [enqueue(session=session, run_id=run.id, payload={"segments": payload_segments})]


def enqueue(*, session: Session, run_id: uuid.UUID, payload: dict[str, Any]) -> int:
    message = OutboxMessage(run_id=run_id, payload=payload)
    session.add(message)
    session.flush()
    return message.id


def enqueue_step(
    *, session: Session, step: StepRun, definition: StepDef, countdown: float | None = None
) -> int:
    """The outbox row publishing one step on its own (retry, wait, fallback, redelivery)."""
    payload: dict[str, Any] = {"segments": [[planner.entry(step, definition)]]}
    if countdown is not None:
        payload["countdown"] = countdown
    return enqueue(session=session, run_id=step.run_id, payload=payload)


def lock_run(*, session: Session, run_id: uuid.UUID) -> Run:
    """The run row locked FOR UPDATE: serialises completion of parallel branches."""
    run = session.scalar(select(Run).where(Run.id == run_id).with_for_update())
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    return run


def lock_step(*, session: Session, step_run_id: uuid.UUID) -> tuple[StepRun, Run] | None:
    """A step and its run, the run row locked first (one query): the step's state is then the
    latest committed one. None when the step is gone."""
    row = session.execute(
        select(Run, StepRun)
        .join(StepRun, StepRun.run_id == Run.id)
        .where(StepRun.id == step_run_id)
        .with_for_update(of=Run)
    ).first()
    if row is None:
        return None
    run, step = row
    return step, run


def deps_done(*, session: Session, step: StepRun, workflow: WorkflowDef) -> bool:
    if step.parent_id is not None:
        return True
    deps = workflow.step(step.step_id).depends_on
    if not deps:
        return True
    wanted = {*deps, *(workflow.step(d).on_error for d in deps)}
    ok = satisfied(step_states(session=session, run_id=step.run_id, only=wanted), workflow)
    return all(d in ok for d in deps)


def lease_deadline(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)

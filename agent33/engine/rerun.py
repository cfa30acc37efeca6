"""Rerun from a step: a new run of the same workflow version that keeps what came before it.

Steps not downstream of `from` keep the original run's outcome: their rows are copied
(`copied_from` names the original run) and they never execute again, so a model step among
them makes no call. `from` and everything downstream of it run again. A map or branch child
(`fan[2]`) reruns alone: its siblings are copied, and its parent runs again to spawn it and
join them. `sub/inner` reruns the sub-run of `sub_workflow` step `sub` from its step `inner`,
and the parent's rerun waits on that sub-run as on a fresh one. Takes `session=` and never
commits; the caller publishes the outbox ids.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from agent33.config import Settings
from agent33.db.models import Run, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.engine import readiness, routes, service, store
from agent33.engine.completion import finish_if_done
from agent33.engine.states import RUN_TERMINAL, RunState, StepState
from agent33.engine.workflows import workflow_of
from agent33.errors import Conflict, NotFound, ValidationFailed
from agent33.llm.router import Route
from agent33.observability import metrics

CHILD_ID = re.compile(r"^(?P<parent>[^\[\]]+)\[(?P<key>[^\[\]]+)\]$")


class InvalidRerun(ValidationFailed):
    """The request names no step of the run (422, like any other invalid field)."""

    http_status = 422


@dataclass
class RerunResult:
    """The new run and what to publish after the commit."""

    run_id: uuid.UUID
    state: str
    copied: list[str] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def downstream(workflow: WorkflowDef, start: str) -> set[str]:
    """`start` and every step that depends on it, transitively. A step's fallback joins the
    set with it (it stands in for the step), and so does the step a fallback replaces."""
    replaced = {s.fallback: s.id for s in workflow.steps if s.fallback is not None}
    found: set[str] = set()
    frontier = [start]
    while frontier:
        current = frontier.pop()
        if current in found:
            continue
        found.add(current)
        frontier.extend(workflow.dependents[current])
        fallback = workflow.step(current).fallback
        if fallback is not None:
            frontier.append(fallback)
        if current in replaced:
            frontier.append(replaced[current])
    return found


def _keeps(step: StepRun, rerun: set[str], satisfied: set[str]) -> bool:
    """Whether a top-level step's outcome is copied: it is not downstream of `from` and its
    dependents could proceed after it (succeeded, skipped, or failed but tolerated); or a
    conditional outside the rerun skipped it, a decision that stands."""
    if step.step_id not in rerun:
        return step.step_id in satisfied
    output = step.output if isinstance(step.output, dict) else {}
    skipped_by = output.get("skipped_by")
    return step.state == StepState.SKIPPED and skipped_by is not None and skipped_by not in rerun


def _copy(old: StepRun, original: Run, **overrides: Any) -> StepRun:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "step_id": old.step_id,
        "position": old.position,
        "action": old.action,
        "state": old.state,
        "attempt": old.attempt,
        "depends_on": list(old.depends_on),
        "inputs": old.inputs,
        "output": old.output,
        "error": old.error,
        "queue": old.queue,
        "worker": old.worker,
        "queued_at": old.queued_at,
        "started_at": old.started_at,
        "finished_at": old.finished_at,
        "key": old.key,
        "copied_from": original.id,
    }
    values.update(overrides)
    return StepRun(**values)


def _pending(workflow: WorkflowDef, step_id: str, position: int, queue: str) -> StepRun:
    return StepRun(
        step_id=step_id,
        position=position,
        action=workflow.step(step_id).action,
        state=StepState.PENDING.value,
        depends_on=list(workflow.step(step_id).depends_on),
        queue=queue,
    )


def _load(session: Session, run_id: uuid.UUID) -> Run:
    original = session.scalar(
        select(Run).where(Run.id == run_id).options(selectinload(Run.steps)).with_for_update()
    )
    if original is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    if original.state not in RUN_TERMINAL:
        raise Conflict(
            f"run {run_id} is {original.state}; only a finished run can be rerun",
            fields={"state": [original.state]},
        )
    return original


def _target(original: Run, workflow: WorkflowDef, from_step: str) -> tuple[str, StepRun | None]:
    """The top-level step to rerun from and, for a child id, the original child."""
    match = CHILD_ID.match(from_step)
    top = match.group("parent") if match else from_step
    if top not in workflow.by_id:
        known = ", ".join(s.id for s in workflow.steps)
        raise InvalidRerun(
            f"from: {top!r} is not a step of {original.workflow_name} (steps: {known})",
            fields={"from": [f"unknown step {from_step!r}"]},
        )
    if match is None:
        return top, None
    child = next((s for s in original.steps if s.step_id == from_step), None)
    if child is None or child.parent_id is None:
        raise InvalidRerun(
            f"from: run {original.id} has no child step {from_step!r}",
            fields={"from": [f"no child step {from_step!r} in run {original.id}"]},
        )
    return top, child


def rerun_run(
    *,
    session: Session,
    settings: Settings,
    run_id: uuid.UUID,
    from_step: str,
    inputs: dict[str, Any] | None = None,
    by: str | None = None,
) -> RerunResult:
    """Create the rerun of a finished run from `from_step`: a top-level id, a child id such as
    `fan[2]`, or `sub/inner` for a step inside the sub-run of `sub_workflow` step `sub`;
    `inputs` replace the original's keys of the same name.

    Raises NotFound (no run), Conflict (the run, or the sub-run named, is not finished),
    InvalidRerun (`from` names no step of the run) or ValidationFailed (the merged inputs do
    not match the workflow's input schema).
    """
    original = _load(session, run_id)
    return _rerun(session, settings, original, from_step, inputs, by, None)


def _rerun(
    session: Session,
    settings: Settings,
    original: Run,
    from_step: str,
    inputs: dict[str, Any] | None,
    by: str | None,
    parent_step: StepRun | None,
    *,
    run_id: uuid.UUID | None = None,
) -> RerunResult:
    """One rerun; a sub-workflow's (`parent_step`, with its id known in advance) recurses."""
    workflow = workflow_of(session, original)
    head, _, inner = from_step.partition("/")
    top, child = _target(original, workflow, head)
    merged = {**original.inputs, **(inputs or {})}
    service.validate_inputs(workflow, merged)
    rerun = downstream(workflow, top)
    old_top = {s.step_id: s for s in original.steps if s.parent_id is None}
    sub_original = _sub_run_of(session, original, workflow, old_top, head) if inner else None
    satisfied = readiness.satisfied({k: s.state for k, s in old_top.items()}, workflow)
    run = Run(
        id=run_id or uuid.uuid4(),
        workflow_id=original.workflow_id,
        workflow_name=original.workflow_name,
        workflow_version=original.workflow_version,
        state=RunState.PENDING.value,
        inputs=merged,
        created_by=by,
        rerun_of=original.id,
        parent_step_run_id=parent_step.id if parent_step is not None else None,
    )
    copied: list[str] = []
    decided: dict[str, Route] = {}
    for position, definition in enumerate(workflow.steps):
        old = old_top.get(definition.id)
        if old is not None and _keeps(old, rerun, satisfied):
            new = _copy(old, original, position=position)
            copied.append(old.step_id)
        else:
            queue, route = routes.plan(session, settings, workflow, definition.id)
            if route is not None:
                decided[definition.id] = route
            new = _pending(workflow, definition.id, position, queue)
        run.steps.append(new)
    session.add(run)
    session.flush()
    children = _copy_children(session, original, run, rerun, child)
    store.add_event(
        session=session,
        run_id=run.id,
        kind="run.created",
        to_state=run.state,
        data={"workflow": run.workflow_name, "version": run.workflow_version},
    )
    store.add_event(
        session=session,
        run_id=run.id,
        kind="run.rerun",
        message=f"rerun of {original.id} from {from_step}",
        data={"rerun_of": str(original.id), "from": from_step, "copied": copied + children},
    )
    routes.record(session=session, run_id=run.id, decided=decided)
    metrics.after_commit(session.info, metrics.run_started, run.workflow_name)
    outbox: list[int] = []
    if sub_original is not None:
        outbox += _rerun_inside(session, settings, run, head, sub_original, inner, by)
    outbox += readiness.dispatch_ready(session=session, run=run, workflow=workflow)
    if not outbox:  # everything was copied (a step a standing conditional skipped)
        if run.state == RunState.PENDING:
            store.set_run_state(session=session, run=run, target=RunState.RUNNING)
        outbox = finish_if_done(session=session, run=run, workflow=workflow)
    return RerunResult(run.id, run.state, copied + children, outbox)


def _sub_run_of(
    session: Session, original: Run, workflow: WorkflowDef, old_top: dict[str, StepRun], head: str
) -> Run:
    """The finished sub-run that `sub_workflow` step `head` of the original started."""
    old = old_top.get(head)
    output = old.output if old is not None and isinstance(old.output, dict) else {}
    if workflow.step(head).action != "sub_workflow" or "run_id" not in output:
        raise InvalidRerun(
            f"from: {head!r} started no sub-run in run {original.id}",
            fields={"from": [f"{head!r} is not a sub_workflow step with a sub-run"]},
        )
    return _load(session, uuid.UUID(str(output["run_id"])))


def _rerun_inside(
    session: Session,
    settings: Settings,
    run: Run,
    step_id: str,
    sub_original: Run,
    inner: str,
    by: str | None,
) -> list[int]:
    """Park the rerun's `sub_workflow` step on a rerun of its original sub-run from `inner`
    (with the original sub-run's inputs); that sub-run ending completes the step as a fresh
    sub-run would. The step is parked first, so a sub-run with nothing to run that finishes at
    once finds its parent waiting for it."""
    step = next(s for s in run.steps if s.step_id == step_id)
    store.set_run_state(session=session, run=run, target=RunState.RUNNING)
    store.set_step_state(session=session, step=step, target=StepState.QUEUED)
    store.set_step_state(session=session, step=step, target=StepState.RUNNING)
    step.attempt = 1
    step.waiting_for = "sub_run"
    sub_run_id = uuid.uuid4()
    step.output = {"run_id": str(sub_run_id)}
    store.add_event(
        session=session,
        run_id=run.id,
        step_id=step_id,
        kind="step.waiting",
        message=f"sub-run {sub_run_id} reruns {sub_original.id} from {inner}",
        data=step.output,
    )
    session.flush()
    result = _rerun(session, settings, sub_original, inner, None, by, step, run_id=sub_run_id)
    return result.outbox_ids


def _copy_children(
    session: Session,
    original: Run,
    run: Run,
    rerun: set[str],
    rerun_child: StepRun | None,
) -> list[str]:
    """Children of a copied parent come along, all of them. A parent that runs again spawns
    only the children it is missing, so the ones that succeeded are copied too, except where
    the rerun itself reruns that parent (then all of them run again) or one of its children
    (then all but that one are copied)."""
    new_steps = {s.step_id: s for s in run.steps}
    every: dict[uuid.UUID, uuid.UUID] = {}
    succeeded: dict[uuid.UUID, uuid.UUID] = {}
    for old in original.steps:
        if old.parent_id is not None or old.action != "parallel_group":
            continue
        new = new_steps[old.step_id]
        if new.copied_from is not None:
            every[old.id] = new.id
        elif old.step_id not in rerun or (
            rerun_child is not None and rerun_child.parent_id == old.id
        ):
            succeeded[old.id] = new.id
    top = max((s.position for s in run.steps), default=0)
    copied: list[str] = []
    for old in sorted(original.steps, key=lambda s: s.position):
        if old.parent_id is None or (rerun_child is not None and old.id == rerun_child.id):
            continue
        parent_id = every.get(old.parent_id)
        if parent_id is None and old.state == StepState.SUCCEEDED:
            parent_id = succeeded.get(old.parent_id)
        if parent_id is None:
            continue
        top += 1
        session.add(_copy(old, original, run_id=run.id, position=top, parent_id=parent_id))
        copied.append(old.step_id)
    session.flush()
    return copied

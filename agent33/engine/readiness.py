"""Readiness: which pending steps may run now, and queueing them as linear segments.

Read when a run starts, when a step ends (only the neighbourhood of the step that ended), and
when the runner checks a delivered step's dependencies. Takes `session=`, never commits.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Set

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.engine import planner, store
from agent33.engine.states import STEP_DONE_OK, StepState

WIDE_FAN_IN = 8
UNFINISHED = (
    StepState.PENDING.value,
    StepState.QUEUED.value,
    StepState.RUNNING.value,
    StepState.RETRYING.value,
)


def _blocked_joins(
    session: Session, run_id: uuid.UUID, workflow: WorkflowDef, finished: Iterable[str]
) -> set[str]:
    """Wide joins of the `finished` steps that still wait for some dependency, found with one
    query each instead of reading every dependency's row on every branch's completion."""
    blocked = set()
    wide = {
        dependent
        for step_id in finished
        for dependent in workflow.dependents[step_id]
        if len(workflow.step(dependent).depends_on) > WIDE_FAN_IN
    }
    for dependent in sorted(wide):
        deps = workflow.step(dependent).depends_on
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


_DEFERRED = "agent33.readiness.deferred"


@contextlib.contextmanager
def deferred(session: Session) -> Iterator[list[int]]:
    """Within: `dispatch_ready(after=...)` only notes the step that ended; on a normal exit the
    neighbourhoods of all of them are planned at once, per run, and the outbox ids appended to
    the yielded list. A batch of siblings then reads the wide joins and the step states once,
    and queues what became ready as one outbox row, instead of once per step."""
    noted: dict[uuid.UUID, tuple[Run, WorkflowDef, set[str]]] = {}
    session.info[_DEFERRED] = noted
    outbox_ids: list[int] = []
    try:
        yield outbox_ids
    finally:
        session.info.pop(_DEFERRED, None)
    for run, workflow, finished in noted.values():
        outbox_ids.extend(_dispatch(session, run, workflow, finished))


def dispatch_ready(
    *, session: Session, run: Run, workflow: WorkflowDef, after: str | None = None
) -> list[int]:
    """Queue every pending step whose dependencies are done, as chains of linear segments.

    With `after` (a step that just ended) only its neighbourhood is read, so finishing a step
    costs the same in a run of 5 steps or 5,000; inside `deferred` that read waits for the
    batch's end.
    """
    noted = session.info.get(_DEFERRED)
    if after is not None and noted is not None:
        noted.setdefault(run.id, (run, workflow, set()))[2].add(after)
        return []
    return _dispatch(session, run, workflow, None if after is None else {after})


def _dispatch(
    session: Session, run: Run, workflow: WorkflowDef, finished: Set[str] | None
) -> list[int]:
    only: set[str] | None = None
    if finished is not None:
        blocked = _blocked_joins(session, run.id, workflow, finished)
        dependents = {d for f in finished for d in workflow.dependents[f] if d not in blocked}
        # Only a pending dependent can start a segment: when none is (a line already queued as
        # one chain, say), the neighbourhood and its lookahead are not read at all.
        near = store.step_states(session=session, run_id=run.id, only=dependents)
        if StepState.PENDING.value not in near.values():
            return []
        only = set()
        for step_id in finished:
            only |= neighbourhood(workflow, step_id, blocked)
    states = store.step_states(session=session, run_id=run.id, only=only)
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
            store.set_step_state(session=session, step=step, target=StepState.QUEUED)
            entries.append(planner.entry(step, workflow.step(step_id)))
        payload_segments.append(entries)
    return [store.enqueue(session=session, run_id=run.id, payload={"segments": payload_segments})]


_DONE = "agent33.readiness.done"


def deps_done(*, session: Session, step: StepRun, workflow: WorkflowDef) -> bool:
    """Whether the step's dependencies let it run. A set found done is remembered for the rest
    of the transaction (the run row is locked, and a done dependency stays done), so the
    siblings of a batch, which share their dependencies, read them once."""
    if step.parent_id is not None:
        return True
    deps = workflow.step(step.step_id).depends_on
    if not deps:
        return True
    done: set[tuple[uuid.UUID, tuple[str, ...]]] = session.info.setdefault(_DONE, set())
    if (step.run_id, deps) in done:
        return True
    wanted = {*deps, *(workflow.step(d).on_error for d in deps)}
    ok = satisfied(store.step_states(session=session, run_id=step.run_id, only=wanted), workflow)
    if all(d in ok for d in deps):
        done.add((step.run_id, deps))
        return True
    return False

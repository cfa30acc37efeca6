"""Child steps of a `parallel_group`: spawned as a chord, joined by a database barrier.

Children are `step_runs` rows with `parent_id` set and step ids like `fan[0]` (map) or
`fan[upper]` (branches). Their definition comes from the parent's `with.step` (map) or
`with.branches[key]`. The parent stays `running` with `waiting_for="children"` (no lease, no
worker held) until the last child ends; whichever finisher sees all siblings terminal closes
the parent under the run lock, and the chord body (`agent33.run.finalize`) does the same check
idempotently as a second trigger.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import RetryPolicy, StepDef, WorkflowDef
from agent33.engine import planner, store
from agent33.engine.action_requests import FanOut
from agent33.engine.states import STEP_TERMINAL, StepState


def child_step_id(parent_step_id: str, key: str) -> str:
    return f"{parent_step_id}[{key}]"


def _spec(parent_def: StepDef, key: str | None) -> dict[str, Any]:
    params = parent_def.params
    if "branches" in params:
        spec = params["branches"].get(key, {})
    else:
        spec = params.get("step", {})
    return spec if isinstance(spec, dict) else {}


def definition(parent_def: StepDef, child: StepRun) -> StepDef:
    """The child's effective definition, derived from its parent's `with`."""
    spec = _spec(parent_def, child.key)
    retries = spec.get("retries")
    if isinstance(retries, dict):
        retries = {**retries, "on": tuple(retries.get("on") or ())}
    return StepDef(
        id=child.step_id,
        action=str(spec.get("action", "transform")),
        params=dict(spec.get("with", {})),
        retries=RetryPolicy(**retries) if isinstance(retries, dict) else parent_def.retries,
        timeout=spec.get("timeout", parent_def.timeout),
        queue=spec.get("queue", parent_def.queue),
    )


def item_of(child: StepRun) -> tuple[Any, str | None]:
    inputs = child.inputs or {}
    return inputs.get("item"), child.key


def spawn(
    *, session: Session, run: Run, parent: StepRun, parent_def: StepDef, fan_out: FanOut
) -> list[int]:
    """Create missing children, queue those not yet succeeded, publish them as one chord.

    New children are inserted already `queued`, all in one flush (a map of 2,000 items is a few
    multi-row INSERTs, not 4,000 statements)."""
    existing = {s.key: s for s in children_of(session, parent)}
    top = session.scalar(select(func.max(StepRun.position)).where(StepRun.run_id == run.id))
    position = (top or 0) + 1
    queued: list[StepRun] = []
    for index, (key, item) in enumerate(fan_out.children):
        child = existing.get(key)
        if child is None:
            child = StepRun(
                run_id=run.id,
                step_id=child_step_id(parent.step_id, key),
                position=position,
                action=str(_spec(parent_def, key).get("action", "transform")),
                state=StepState.PENDING.value,
                depends_on=[],
                queue=parent.queue,
                parent_id=parent.id,
                key=key,
                inputs={"item": item, "index": index},
            )
            position += 1
            session.add(child)
        if child.state == StepState.PENDING:
            store.set_step_state(session=session, step=child, target=StepState.QUEUED)
            queued.append(child)
    session.flush()  # the new children's ids, for their messages
    entries = [[planner.entry(child, definition(parent_def, child))] for child in queued]
    parent.waiting_for = "children"
    parent.lease_expires_at = None
    if not entries:
        return []
    payload = {"segments": entries, "chord_body": str(parent.id)}
    return [store.enqueue(session=session, run_id=run.id, payload=payload)]


def children_of(session: Session, parent: StepRun) -> list[StepRun]:
    return list(
        session.scalars(
            select(StepRun).where(StepRun.parent_id == parent.id).order_by(StepRun.position)
        )
    )


def close_parent_if_done(
    *, session: Session, run: Run, parent: StepRun, workflow: WorkflowDef
) -> bool:
    """When every child ended: the parent succeeds with their outputs, or fails naming one."""
    if parent.state != StepState.RUNNING or parent.waiting_for != "children":
        return False
    states = session.scalars(select(StepRun.state).where(StepRun.parent_id == parent.id))
    if any(state not in STEP_TERMINAL for state in states):
        return False
    children = children_of(session, parent)
    parent.waiting_for = None
    failed = [c for c in children if c.state in (StepState.FAILED, StepState.CANCELLED)]
    if failed:
        first = failed[0]
        message = f"child {first.step_id} {first.state}: {(first.error or {}).get('message', '')}"
        parent.error = {"type": "ChildFailed", "message": message.strip(), "child": first.step_id}
        store.set_step_state(session=session, step=parent, target=StepState.FAILED, message=message)
        return True
    if "branches" in workflow.step(parent.step_id).params:
        parent.output = {c.key: c.output for c in children}
    else:  # in item order: a resumed or rerun child is spawned after its siblings
        children.sort(key=lambda c: int((c.inputs or {}).get("index") or 0))
        parent.output = [c.output for c in children]
    store.set_step_state(session=session, step=parent, target=StepState.SUCCEEDED)
    return True

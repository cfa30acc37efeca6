"""The route of an `invoke_agent` step's model call: local (its agent's model on its queue) or
remote (the agent's remote fallback on `llm`, because `llm.gpu` was saturated).

Decided once, when the run is created (`plan`, through `llm.router.route_call`, the rule chat
uses too), recorded as a `step.routed` run event, and read back by the step's action (`routed`)
so the worker calls the model the route chose and the step output says which and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import AgentDefinition, RunEvent
from agent33.definitions.models import WorkflowDef
from agent33.engine import store
from agent33.llm.router import Route, route_call
from agent33.wire import Queue

ROUTED_EVENT = "step.routed"


def plan(
    session: Session, settings: Settings, workflow: WorkflowDef, step_id: str
) -> tuple[str, Route | None]:
    """The step's queue and, for an agent's model call, its route. The step's own queue wins
    (no route); an agent named by an expression goes to `llm` (unknown until the step runs);
    every other step to `steps`."""
    step = workflow.step(step_id)
    if step.queue:
        return step.queue, None
    if step.action != "invoke_agent":
        return Queue.STEPS.value, None
    agent = step.params.get("agent")
    spec = None
    if isinstance(agent, str) and "{" not in agent:
        spec = session.scalar(
            select(AgentDefinition.spec)
            .where(AgentDefinition.name == agent)
            .order_by(AgentDefinition.version.desc())
            .limit(1)
        )
    if not isinstance(spec, dict):
        return Queue.LLM.value, None
    queue, remote = spec.get("queue"), spec.get("remote_fallback")
    route = route_call(
        settings,
        str(spec.get("model", "")),
        queue=str(queue) if queue else None,
        remote_fallback=str(remote) if remote else None,
    )
    return route.queue, route


def record(*, session: Session, run_id: uuid.UUID, decided: Mapping[str, Route]) -> None:
    """One `step.routed` event per routed step: which route, why, the model and the queue."""
    for step_id, route in decided.items():
        store.add_event(
            session=session,
            run_id=run_id,
            kind=ROUTED_EVENT,
            step_id=step_id,
            message=f"{route.route}: {route.reason}",
            data=route.record(),
        )


def routed(*, session: Session, run_id: str, step_id: str) -> dict[str, Any] | None:
    """The route recorded for this step when its run was created; None when none was (an
    agent named by an expression, a run created before routes were recorded)."""
    try:
        key = uuid.UUID(run_id)
    except ValueError:
        return None
    data = session.scalar(
        select(RunEvent.data)
        .where(RunEvent.run_id == key, RunEvent.kind == ROUTED_EVENT, RunEvent.step_id == step_id)
        .order_by(RunEvent.id.desc())
        .limit(1)
    )
    return data if isinstance(data, dict) else None

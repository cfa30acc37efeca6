"""Replay a run: a new run of the same workflow version and inputs whose model and tool calls
are answered from the original's recording, and the diff of the two runs' step outputs.

A strict replay fails the step that makes a call the recording does not have (its prompt,
tools or arguments changed); otherwise that call goes out live and is recorded. Sub-workflow
runs started by a replayed run are not replayed: their calls go out live.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import Run, RunBudget, RunReplay, StepRun
from agent33.engine import service
from agent33.errors import NotFound

# Timings differ between any two executions; they are not what a replay checks.
VOLATILE = frozenset({"latency_ms", "duration_ms"})


def start_replay(
    *,
    session: Session,
    settings: Settings,
    run_id: uuid.UUID,
    strict: bool = False,
    created_by: str | None = None,
    workflow_version: int | None = None,
) -> tuple[Run, list[int]]:
    """The replay run (linked to `run_id`) and the outbox ids to publish after the commit.
    `workflow_version`: replay against another stored version (changed prompts or steps)."""
    source = service.get_run(session=session, run_id=run_id)
    budget = session.get(RunBudget, run_id)
    limits = (
        {"tokens": budget.token_limit, "cost": budget.cost_limit, "on_budget": budget.on_budget}
        if budget is not None
        else None
    )
    run, outbox_ids, _ = service.start_run(
        session=session,
        settings=settings,
        workflow_name=source.workflow_name,
        inputs=dict(source.inputs),
        version=workflow_version or source.workflow_version,
        created_by=created_by,
        budget=limits,
    )
    session.add(RunReplay(run_id=run.id, source_run_id=source.id, strict=strict))
    session.flush()
    return run, outbox_ids


def replay_of(*, session: Session, run_id: uuid.UUID) -> RunReplay:
    link = session.get(RunReplay, run_id)
    if link is None:
        raise NotFound(f"run {run_id} is not a replay", fields={"run_id": ["not a replay"]})
    return link


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def _steps(session: Session, run_id: uuid.UUID) -> dict[str, StepRun]:
    rows = session.scalars(select(StepRun).where(StepRun.run_id == run_id))
    return {row.step_id: row for row in rows}


def diff(*, session: Session, run_id: uuid.UUID) -> dict[str, Any]:
    """`{run_id, source_run_id, strict, state, source_state, differences: [{step_id, field,
    original, replay}]}` over every step (map children included), timings left out."""
    link = replay_of(session=session, run_id=run_id)
    replay = service.get_run(session=session, run_id=run_id)
    source = service.get_run(session=session, run_id=link.source_run_id)
    ours, theirs = _steps(session, run_id), _steps(session, link.source_run_id)
    differences: list[dict[str, Any]] = []
    for step_id in sorted(set(ours) | set(theirs)):
        mine, original = ours.get(step_id), theirs.get(step_id)
        for name in ("state", "output"):
            before = without_timings(getattr(original, name)) if original is not None else None
            after = without_timings(getattr(mine, name)) if mine is not None else None
            if before != after:
                differences.append(
                    {"step_id": step_id, "field": name, "original": before, "replay": after}
                )
    return {
        "run_id": run_id,
        "source_run_id": link.source_run_id,
        "strict": link.strict,
        "state": replay.state,
        "source_state": source.state,
        "error": replay.error,
        "differences": differences,
    }

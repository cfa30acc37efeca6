"""A run's workflow definition and a step's definition, as the engine reads them per step."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.registry import definition_by_id
from agent33.engine import children


def workflow_of(session: Session, run: Run) -> WorkflowDef:
    """The run's parsed definition (cached by stored row id: no query on the hot path)."""
    return definition_by_id(session=session, workflow_id=run.workflow_id)


_PARENTS = "agent33.workflows.parent_definitions"


def step_definition(session: Session, workflow: WorkflowDef, step: StepRun) -> StepDef:
    """A top-level step's definition, or a child's derived from its parent (whose definition
    is remembered for the transaction: a batch of 64 children looks their parent up once)."""
    if step.parent_id is None:
        return workflow.step(step.step_id)
    known: dict[uuid.UUID, StepDef] = session.info.setdefault(_PARENTS, {})
    parent_def = known.get(step.parent_id)
    if parent_def is None:
        parent = session.get(StepRun, step.parent_id)
        assert parent is not None
        parent_def = known[step.parent_id] = step_definition(session, workflow, parent)
    return children.definition(parent_def, step)

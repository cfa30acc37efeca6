"""A run's workflow definition and a step's definition, as the engine reads them per step."""

from __future__ import annotations

from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.registry import definition_by_id
from agent33.engine import children


def workflow_of(session: Session, run: Run) -> WorkflowDef:
    """The run's parsed definition (cached by stored row id: no query on the hot path)."""
    return definition_by_id(session=session, workflow_id=run.workflow_id)


def step_definition(session: Session, workflow: WorkflowDef, step: StepRun) -> StepDef:
    """A top-level step's definition, or a child's derived from its parent."""
    if step.parent_id is None:
        return workflow.step(step.step_id)
    parent = session.get(StepRun, step.parent_id)
    assert parent is not None
    return children.definition(step_definition(session, workflow, parent), step)

"""The expression context of a run: `inputs`, `steps.<id>.output|state|error`, `run.id`.

Only the steps an expression can name are read (one query), so a step's cost does not grow
with the size of its run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import WorkflowDef
from agent33.engine.expressions import render

STEP_REF = re.compile(r"steps\s*\.\s*([A-Za-z_][A-Za-z0-9_\-]*)")
DYNAMIC_REF = re.compile(r"steps\s*\[")


def referenced_steps(*values: Any) -> set[str] | None:
    """Step ids the values' expressions name; None when a dynamic `steps[...]` needs them all."""
    text = json.dumps(values, default=str)
    if DYNAMIC_REF.search(text):
        return None
    return set(STEP_REF.findall(text))


def run_context(session: Session, run: Run, refs: Iterable[str] | None) -> dict[str, Any]:
    query = select(StepRun.step_id, StepRun.state, StepRun.output, StepRun.error).where(
        StepRun.run_id == run.id, StepRun.parent_id.is_(None)
    )
    steps: dict[str, Any] = {}
    wanted = None if refs is None else list(refs)
    if wanted is None or wanted:
        if wanted is not None:
            query = query.where(StepRun.step_id.in_(wanted))
        for step_id, state, output, error in session.execute(query):
            steps[step_id] = {"output": output, "state": state, "error": error}
    return {
        "inputs": run.inputs,
        "steps": steps,
        "run": {"id": str(run.id), "workflow": run.workflow_name},
    }


def render_outputs(session: Session, workflow: WorkflowDef, run: Run) -> dict[str, Any]:
    """The run's `outputs` mapping; with none declared, the last step's output."""
    if not workflow.outputs:
        last = workflow.steps[-1].id
        context = run_context(session, run, [last])
        return {"result": context["steps"].get(last, {}).get("output")}
    context = run_context(session, run, referenced_steps(workflow.outputs))
    return {
        key: render(value, context, step_id="outputs") for key, value in workflow.outputs.items()
    }

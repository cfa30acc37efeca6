"""The expression context of a run: `inputs`, `steps.<id>.output|state`, `run.id`."""

from __future__ import annotations

from typing import Any

from agent33.db.models import Run
from agent33.definitions.models import WorkflowDef
from agent33.engine.expressions import render


def run_context(run: Run) -> dict[str, Any]:
    return {
        "inputs": run.inputs,
        "steps": {
            s.step_id: {"output": s.output, "state": s.state, "error": s.error}
            for s in run.steps
            if s.parent_id is None
        },
        "run": {"id": str(run.id), "workflow": run.workflow_name},
    }


def render_outputs(workflow: WorkflowDef, run: Run) -> dict[str, Any]:
    """The run's `outputs` mapping; with none declared, the last step's output."""
    context = run_context(run)
    if not workflow.outputs:
        top = [s for s in run.steps if s.parent_id is None]
        last = top[-1] if top else None
        return {"result": last.output if last else None}
    return {
        key: render(value, context, step_id="outputs") for key, value in workflow.outputs.items()
    }

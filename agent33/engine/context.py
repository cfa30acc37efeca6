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
            s.step_id: {"output": s.output, "state": s.state, "error": s.error} for s in run.steps
        },
        "run": {"id": str(run.id), "workflow": run.workflow_name},
    }


def render_outputs(workflow: WorkflowDef, run: Run) -> dict[str, Any]:
    """The run's `outputs` mapping; with none declared, the last step's output."""
    context = run_context(run)
    if not workflow.outputs:
        last = run.steps[-1] if run.steps else None
        return {"result": last.output if last else None}
    return {
        key: render(value, context, step_id="outputs") for key, value in workflow.outputs.items()
    }

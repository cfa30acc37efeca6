"""Engine-level checks of a workflow on top of schema and graph: actions, queues, expressions."""

from __future__ import annotations

from agent33.definitions.models import WorkflowDef
from agent33.engine.actions import known_actions
from agent33.engine.expressions import check_syntax
from agent33.errors import DefinitionError
from agent33.wire import Queue, is_known_queue


def validate_workflow(workflow: WorkflowDef, origin: str = "<api>") -> None:
    """Raise DefinitionError naming origin, step and field for the first problems found."""
    problems: dict[str, list[str]] = {}
    actions = known_actions()
    for step in workflow.steps:
        if step.action not in actions:
            problems.setdefault(f"steps.{step.id}.action", []).append(
                f"unknown action {step.action!r} (known: {', '.join(actions)})"
            )
        if step.queue is not None and not is_known_queue(step.queue):
            problems.setdefault(f"steps.{step.id}.queue", []).append(
                f"unknown queue {step.queue!r} (known: {', '.join(q.value for q in Queue)})"
            )
        if step.on_error not in ("fail", "continue"):
            problems.setdefault(f"steps.{step.id}.on_error", []).append(
                "must be 'fail' or 'continue'"
            )
        syntax = check_syntax(step.params) + check_syntax(
            "{{ " + step.when + " }}" if step.when else ""
        )
        if syntax:
            problems.setdefault(f"steps.{step.id}.with", []).extend(syntax)
    for key, value in workflow.outputs.items():
        syntax = check_syntax(value)
        if syntax:
            problems.setdefault(f"outputs.{key}", []).extend(syntax)
    if problems:
        path, messages = next(iter(problems.items()))
        parts = path.split(".")
        where = (
            f"step {parts[1]!r} field {'.'.join(parts[2:])!r}"
            if parts[0] == "steps"
            else f"field {path!r}"
        )
        raise DefinitionError(
            f"{origin}: {where}: {'; '.join(messages)}", fields={"file": origin, **problems}
        )

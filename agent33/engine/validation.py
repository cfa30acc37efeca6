"""Engine-level checks of a workflow on top of schema and graph: actions, queues, expressions,
fallbacks, conditional branches and parallel groups."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.schemas import RetrySchema
from agent33.engine.actions import known_actions
from agent33.engine.actions.tool import problems as tool_problems
from agent33.engine.expressions import check_syntax, constant_budget
from agent33.errors import DefinitionError
from agent33.wire import Queue, is_known_queue

Problems = dict[str, list[str]]


def _add(problems: Problems, step: StepDef, field: str, message: str) -> None:
    problems.setdefault(f"steps.{step.id}.{field}", []).append(message)


def _check_step(
    step: StepDef,
    workflow: WorkflowDef,
    actions: list[str],
    problems: Problems,
    tools: Collection[str] | None = None,
) -> None:
    if step.action not in actions:
        _add(
            problems,
            step,
            "action",
            f"unknown action {step.action!r} (known: {', '.join(actions)})",
        )
    if step.queue is not None and not is_known_queue(step.queue):
        known = ", ".join(q.value for q in Queue)
        _add(problems, step, "queue", f"unknown queue {step.queue!r} (known: {known})")
    if step.fallback is not None:
        if step.fallback not in workflow.by_id:
            _add(
                problems,
                step,
                "on_error",
                "must be 'fail', 'continue' or the id of a fallback step",
            )
        elif step.fallback == step.id:
            _add(problems, step, "on_error", "a step cannot be its own fallback")
    syntax = check_syntax(step.params) + check_syntax(
        "{{ " + step.when + " }}" if step.when else ""
    )
    if syntax:
        problems.setdefault(f"steps.{step.id}.with", []).extend(syntax)
    if step.action == "conditional":
        _check_conditional(step, workflow, problems)
    if step.action == "parallel_group":
        _check_parallel(step, actions, problems)
    _check_calls(step, problems, tools)


def _check_calls(step: StepDef, problems: Problems, tools: Collection[str] | None) -> None:
    """The parameters of steps that call an agent or a tool by name."""
    if step.action == "tool":
        for field, messages in tool_problems(step.params, tools).items():
            _add(problems, step, field, messages[0])
    if step.action == "invoke_agent" and not step.params.get("agent"):
        _add(problems, step, "with.agent", "invoke_agent needs `agent` (an agent name)")
    if step.action == "invoke_agent" and step.queue and not step.queue.startswith("llm"):
        _add(problems, step, "queue", "model calls run on `llm` or `llm.gpu`")


def _check_conditional(step: StepDef, workflow: WorkflowDef, problems: Problems) -> None:
    dependents = workflow.dependents[step.id]
    branches = step.params.get("branches")
    if not isinstance(branches, list) or not branches:
        _add(problems, step, "with.branches", "a non-empty list of {when, next} is required")
        return
    named: list[Any] = list(step.params.get("default", []))
    for index, branch in enumerate(branches):
        if not isinstance(branch, dict) or "when" not in branch:
            _add(
                problems, step, f"with.branches.{index}", "needs `when` (an expression) and `next`"
            )
            continue
        problems_in_when = check_syntax("{{ " + str(branch["when"]) + " }}")
        if problems_in_when:
            _add(problems, step, f"with.branches.{index}.when", "; ".join(problems_in_when))
        named.extend(branch.get("next", []))
    for target in named:
        if target not in dependents:
            _add(
                problems,
                step,
                "with.branches",
                f"{target!r} must be a step that depends on {step.id!r}",
            )


def _check_parallel(step: StepDef, actions: list[str], problems: Problems) -> None:
    params = step.params
    if ("items" in params) == ("branches" in params):
        _add(problems, step, "with", "give exactly one of `items` (with `step`) or `branches`")
        return
    specs = (
        [params.get("step")] if "items" in params else list((params.get("branches") or {}).values())
    )
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("action") not in actions:
            action = spec.get("action") if isinstance(spec, dict) else None
            _add(problems, step, "with", f"child step needs a known `action`, got {action!r}")
        elif spec.get("action") == "parallel_group":
            _add(problems, step, "with", "parallel groups cannot be nested")
        elif "retries" in spec:
            errors = RetrySchema().validate(
                spec["retries"] if isinstance(spec["retries"], dict) else {"max": spec["retries"]}
            )
            for field, messages in errors.items():
                _add(problems, step, f"with.retries.{field}", "; ".join(map(str, messages)))


def validate_workflow(
    workflow: WorkflowDef, origin: str = "<api>", tools: Collection[str] | None = None
) -> None:
    """Raise DefinitionError naming origin, step and field for the first problems found;
    `tools` (`agent33.tools.known_tools(settings)`): the names `action: tool` steps may call."""
    problems: Problems = {}
    actions = known_actions()
    with constant_budget():  # one time budget for the constant parts of all expressions
        _check_steps_and_outputs(workflow, actions, problems, tools)
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


def _check_steps_and_outputs(
    workflow: WorkflowDef,
    actions: list[str],
    problems: Problems,
    tools: Collection[str] | None = None,
) -> None:
    if workflow.concurrency is not None:
        key = workflow.concurrency.key
        syntax = check_syntax(key if "{{" in key else "{{ " + key + " }}")
        if syntax:
            problems.setdefault("concurrency.key", []).extend(syntax)
    for step in workflow.steps:
        _check_step(step, workflow, actions, problems, tools)
    for step in workflow.steps:
        for dep in step.depends_on:
            if dep in workflow.fallbacks:
                _add(
                    problems,
                    step,
                    "depends_on",
                    f"{dep!r} is a fallback step; depend on the step it replaces",
                )
    for key, value in workflow.outputs.items():
        syntax = check_syntax(value)
        if syntax:
            problems.setdefault(f"outputs.{key}", []).extend(syntax)

"""Graph checks on a workflow: duplicate ids, unknown dependencies, cycles (named), outputs."""

from __future__ import annotations

import re

from agent33.definitions.models import WorkflowDef

STEP_REF = re.compile(r"steps\.([A-Za-z_][A-Za-z0-9_\-]*)")


def graph_problems(workflow: WorkflowDef) -> dict[str, list[str]]:
    """Field path -> problems; empty when the DAG is sound."""
    problems: dict[str, list[str]] = {}
    seen: set[str] = set()
    for step in workflow.steps:
        if step.id in seen:
            problems.setdefault(f"steps.{step.id}.id", []).append(f"duplicate step id {step.id!r}")
        seen.add(step.id)
    for step in workflow.steps:
        for dep in step.depends_on:
            if dep not in seen:
                problems.setdefault(f"steps.{step.id}.depends_on", []).append(
                    f"unknown step {dep!r}"
                )
            if dep == step.id:
                problems.setdefault(f"steps.{step.id}.depends_on", []).append(
                    "a step cannot depend on itself"
                )
    cycle = find_cycle(workflow)
    if cycle:
        problems.setdefault(f"steps.{cycle[0]}.depends_on", []).append(
            "cycle: " + " -> ".join([*cycle, cycle[0]])
        )
    for key, expression in workflow.outputs.items():
        for ref in STEP_REF.findall(str(expression)):
            if ref not in seen:
                problems.setdefault(f"outputs.{key}", []).append(f"refers to unknown step {ref!r}")
    return problems


def find_cycle(workflow: WorkflowDef) -> list[str]:
    """One dependency cycle as a list of step ids (depth-first, three colours), or []."""
    deps = {s.id: [d for d in s.depends_on if d != s.id] for s in workflow.steps}
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        colour[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if colour.get(dep) == 1:
                return stack[stack.index(dep) :]
            if colour.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return []

    for node in deps:
        if colour.get(node) is None:
            found = visit(node)
            if found:
                return list(reversed(found))
    return []


def topological_order(workflow: WorkflowDef) -> list[str]:
    """Step ids in a stable dependency order (definition order breaks ties)."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(workflow.steps)
    while pending:
        progressed = False
        for step in list(pending):
            if all(dep in done for dep in step.depends_on):
                order.append(step.id)
                done.add(step.id)
                pending.remove(step)
                progressed = True
        if not progressed:
            raise ValueError("workflow has a cycle")
    return order

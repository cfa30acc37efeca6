"""A run's lineage: which step outputs and run inputs fed which step inputs, and which
documents a retrieval-augmented answer cited, as one graph.

Data edges come from the definition the run ran (its templates name `steps.<id>.output...` and
`inputs.<name>`), read from the parsed Jinja expressions rather than by regular expression, so
`steps['a'].output.items | length` and a reference inside a filter's argument are both found.
Citations come from what the steps recorded (`output.citations` of `invoke_agent`), so the
graph shows the documents a run really used, child steps of a fan-out included.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.db.models import Run, StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.definitions.registry import definition_by_id
from agent33.errors import NotFound

_parser = ImmutableSandboxedEnvironment()
ROOTS = ("steps", "inputs")


@dataclass(frozen=True)
class Reference:
    """`steps.<step>.<path>` (root `steps`) or `inputs.<path>` (root `inputs`, step None)."""

    root: str
    step: str | None
    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        head = f"steps.{self.step}" if self.root == "steps" else "inputs"
        return ".".join((head, *self.path))


@dataclass
class Graph:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Keyed by the edge's items, so adding one is a lookup, not a scan; kept in insertion order.
    _edges: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = field(default_factory=dict)

    @property
    def edges(self) -> list[dict[str, Any]]:
        return list(self._edges.values())

    def node(self, node_id: str, kind: str, label: str, **data: Any) -> None:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label, **data})

    def edge(self, source: str, target: str, kind: str, **data: Any) -> None:
        found = {"source": source, "target": target, "kind": kind, **data}
        self._edges.setdefault(tuple(sorted(found.items(), key=lambda item: item[0])), found)


def _chain(node: nodes.Node) -> tuple[str, list[str]] | None:
    """`steps.a.output['x']` -> ("steps", ["a", "output", "x"]); None when the chain does not
    start at a plain name or a key is not a constant."""
    if isinstance(node, nodes.Name):
        return node.name, []
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return None if inner is None else (inner[0], [*inner[1], node.attr])
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _chain(node.node)
        return None if inner is None else (inner[0], [*inner[1], str(node.arg.value)])
    return None


def _walk(node: nodes.Node) -> Iterator[tuple[str, list[str]]]:
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        # `steps.a.output.text.split()`: what is read is `text`, not its method `split`
        yield from _walk(node.node.node)
        arguments: list[nodes.Node | None] = [*node.args, *node.kwargs]
        for extra in (node.dyn_args, node.dyn_kwargs, *arguments):
            if extra is not None:
                yield from _walk(extra)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        found = _chain(node)
        if found is not None:
            yield found
            if isinstance(node, nodes.Getitem):
                yield from _walk(node.arg)
            return
    for child in node.iter_child_nodes():
        yield from _walk(child)


@lru_cache(maxsize=1024)
def references_in_text(text: str) -> tuple[Reference, ...]:
    """The `steps.*` and `inputs.*` references of one template string (none if it does not
    parse: validation has already refused such definitions)."""
    if "{{" not in text and "{%" not in text:
        return ()
    try:
        tree = _parser.parse(text)
    except TemplateSyntaxError:
        return ()
    found: list[Reference] = []
    for root, path in _walk(tree):
        if root == "steps" and path:
            ref = Reference("steps", path[0], tuple(path[1:]))
        elif root == "inputs":
            ref = Reference("inputs", None, tuple(path))
        else:
            continue
        if ref not in found:
            found.append(ref)
    return tuple(found)


def references(value: Any, where: str) -> Iterator[tuple[str, Reference]]:
    """(field path, reference) for every template inside a JSON-like value."""
    if isinstance(value, str):
        for ref in references_in_text(value):
            yield where, ref
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "when" and isinstance(item, str):  # a bare condition (`conditional`)
                item = _braced(item)
            yield from references(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, f"{where}[{index}]")


def step_references(step: StepDef) -> Iterator[tuple[str, Reference]]:
    yield from references(step.params, "with")
    if step.when:
        yield from references(_braced(step.when), "when")


def _braced(condition: str) -> str:
    """A bare condition (`when: steps.a.output > 1`) as the expression it is evaluated as."""
    return condition if "{{" in condition else "{{ " + condition + " }}"


def _input_names(workflow: WorkflowDef, run: Run) -> list[str]:
    declared = workflow.inputs.get("properties") if isinstance(workflow.inputs, dict) else None
    names = list(run.inputs or {})
    names += [name for name in declared or {} if name not in names]
    return names


def _source(graph: Graph, ref: Reference, steps: dict[str, StepDef]) -> str | None:
    if ref.root == "inputs":
        if not ref.path:
            return "inputs"
        node_id = f"input:{ref.path[0]}"
        graph.node(node_id, "input", ref.path[0])
        return node_id
    return f"step:{ref.step}" if ref.step in steps else None


def _data_edges(graph: Graph, workflow: WorkflowDef) -> None:
    steps = workflow.by_id
    for step in workflow.steps:
        for where, ref in step_references(step):
            source = _source(graph, ref, steps)
            if source is not None:
                graph.edge(source, f"step:{step.id}", "data", **{"from": ref.dotted, "to": where})
        for dep in step.depends_on:
            graph.edge(f"step:{dep}", f"step:{step.id}", "depends_on")
        if step.fallback is not None and step.fallback in steps:
            graph.edge(f"step:{step.id}", f"step:{step.fallback}", "fallback")
    for name, template in workflow.outputs.items():
        for _, ref in references(template, name):
            source = _source(graph, ref, steps)
            if source is not None:
                graph.node(f"output:{name}", "output", name)
                graph.edge(source, f"output:{name}", "data", **{"from": ref.dotted, "to": name})


def citations_of(output: Any) -> list[dict[str, Any]]:
    """The `citations` a step recorded (an agent's answer), well-formed ones only."""
    if not isinstance(output, dict) or not isinstance(output.get("citations"), list):
        return []
    return [c for c in output["citations"] if isinstance(c, dict) and c.get("document_id")]


def _citation_edges(graph: Graph, rows: list[StepRun]) -> None:
    by_id = {row.id: row for row in rows}
    for row in rows:
        top = row
        while top.parent_id is not None and top.parent_id in by_id:
            top = by_id[top.parent_id]
        for citation in citations_of(row.output):
            document = f"document:{citation['document_id']}"
            graph.node(
                document,
                "document",
                citation.get("title") or citation.get("key") or citation["document_id"],
                document_id=citation["document_id"],
                key=citation.get("key"),
                source=citation.get("source"),
            )
            graph.edge(
                document,
                f"step:{top.step_id}",
                "cited",
                chunk_id=citation.get("chunk_id"),
                index=citation.get("index"),
                score=citation.get("score"),
                **({"child": row.key or row.step_id} if top is not row else {}),
            )


def lineage(*, session: Session, run_id: uuid.UUID) -> dict[str, Any]:
    """The graph of run `run_id`: nodes (inputs, steps with their state, outputs, documents)
    and edges (`data`, `depends_on`, `fallback`, `cited`). Raises NotFound for no such run."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found", fields={"run_id": ["not found"]})
    workflow = definition_by_id(session=session, workflow_id=run.workflow_id)
    rows = list(
        session.scalars(select(StepRun).where(StepRun.run_id == run_id).order_by(StepRun.position))
    )
    states = {row.step_id: row for row in rows if row.parent_id is None}
    graph = Graph()
    for name in _input_names(workflow, run):
        graph.node(f"input:{name}", "input", name)
    for step in workflow.steps:
        row = states.get(step.id)
        graph.node(
            f"step:{step.id}",
            "step",
            step.id,
            action=step.action,
            state=row.state if row is not None else None,
        )
    _data_edges(graph, workflow)
    _citation_edges(graph, rows)
    if any(edge["source"] == "inputs" for edge in graph.edges):
        graph.node("inputs", "input", "inputs")
    return {
        "run_id": str(run.id),
        "workflow": run.workflow_name,
        "version": run.workflow_version,
        "state": run.state,
        "nodes": list(graph.nodes.values()),
        "edges": graph.edges,
    }

"""Lay a run's steps out as a left-to-right DAG for an inline SVG: no JavaScript library.

Each step sits in the layer one past its deepest dependency (its longest path from a root),
so every edge points right; steps of a layer are stacked in definition order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NODE_W = 150
NODE_H = 44
GAP_X = 60
GAP_Y = 24
MARGIN = 12


@dataclass(frozen=True)
class StepShape:
    """What the layout needs of a step: its id, action and the ids it depends on."""

    step_id: str
    action: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    step_id: str
    action: str
    layer: int
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str  # an SVG path `d`: a curve from the source's right side to the target's left


@dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def layers(steps: Sequence[StepShape]) -> dict[str, int]:
    """Step id -> layer (0 for roots); dependencies outside `steps` are ignored and a cycle
    (never stored: workflows are validated) cannot loop forever."""
    known = {step.step_id: step for step in steps}
    found: dict[str, int] = {}

    def depth(step_id: str, seen: frozenset[str]) -> int:
        if step_id in found:
            return found[step_id]
        deps = [d for d in known[step_id].depends_on if d in known and d not in seen]
        value = 1 + max((depth(d, seen | {d}) for d in deps), default=-1)
        found[step_id] = value
        return value

    for step in steps:
        depth(step.step_id, frozenset({step.step_id}))
    return found


def layout(steps: Sequence[StepShape]) -> Layout:
    """Positions for every step and a curve for every dependency edge."""
    by_layer = layers(steps)
    rows: dict[int, int] = {}
    nodes: list[Node] = []
    for step in steps:
        layer = by_layer[step.step_id]
        row = rows.get(layer, 0)
        rows[layer] = row + 1
        x = MARGIN + layer * (NODE_W + GAP_X)
        y = MARGIN + row * (NODE_H + GAP_Y)
        nodes.append(Node(step.step_id, step.action, layer, x, y))
    placed = {node.step_id: node for node in nodes}
    edges: list[Edge] = []
    for step in steps:
        target = placed[step.step_id]
        for dep in step.depends_on:
            source = placed.get(dep)
            if source is None:
                continue
            x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
            x2, y2 = target.x, target.y + NODE_H // 2
            bend = (x2 - x1) // 2
            path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
            edges.append(Edge(dep, step.step_id, path))
    width = MARGIN * 2 + (max(by_layer.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return Layout(tuple(nodes), tuple(edges), width, height)

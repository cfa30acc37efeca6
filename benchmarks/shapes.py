"""The benchmark shapes: an Agent33 workflow document and the raw Celery variants of each.

Every raw variant publishes immutable `bench.noop` signatures to the `steps` queue and blocks on
the result backend until the last task finished; it raises on a task failure or on `timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from benchmarks.bench_app import NOOP_ACTION, noop

RawVariant = Callable[[float], None]

# Seconds between result checks while `.get()` waits. Celery's default (0.5 s) makes a
# `GroupResult.get()` take ~500 ms even for 4 no-ops (the drainer re-checks the group's barrier
# only between waits); 1 ms measures the broker and the worker instead of that sleep.
RESULT_INTERVAL = 0.001

FULL_CHAIN = 200
FULL_FANOUT = 500
FULL_WIDE_FANOUT = 2000
FULL_LAYERS = 100
DIAMOND_WIDTH = 4


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: the Agent33 document and its raw Celery variants by name."""

    key: str
    label: str
    steps: int
    document: dict[str, Any]
    raw: dict[str, RawVariant] = field(default_factory=dict)


def _noops(count: int) -> list[Signature]:
    return [noop.si() for _ in range(count)]


def _await(canvas: Signature, timeout: float) -> None:
    """Publish `canvas` and wait for its (last) result; raises on a failed task or a timeout."""
    canvas.apply_async().get(timeout=timeout, interval=RESULT_INTERVAL)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("raw variant ran past its deadline")
    return left


def _step(step_id: str, depends_on: list[str], action: str = "transform") -> dict[str, Any]:
    return {"id": step_id, "action": action, "with": {}, "depends_on": depends_on}


def _workflow(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "version": 1, "description": "benchmark shape", "steps": steps}


def chain_shape(length: int, *, fused: bool = True) -> Shape:
    """`length` no-op steps, each depending on the previous one. `fused`: `transform` steps (pure
    database work, which the engine runs several to a message); else a no-op action that is not
    inline, so every step is its own message, claimed and recorded in commits of its own."""
    action = "transform" if fused else NOOP_ACTION
    steps = [_step(f"s{i}", [f"s{i - 1}"] if i else [], action) for i in range(length)]

    def canvas(timeout: float) -> None:
        _await(chain(*_noops(length)), timeout)

    def driver(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(length):
            _await(noop.si(), _left(deadline))

    return Shape(
        key="chain" if fused else "chain_unfused",
        label=f"chain x{length}" + ("" if fused else " not fused"),
        steps=length,
        document=_workflow(f"bench_chain_{length}" + ("" if fused else "_unfused"), steps),
        raw={"raw: chain(si, si, ...)": canvas, "raw: driver, one task at a time": driver},
    )


def fanout_shape(width: int, *, mapped: bool = False) -> Shape:
    """`width` independent no-op steps and one join step depending on all of them. `mapped`: the
    branches are the children of one `parallel_group` over `width` items (a workflow holds at
    most 1,000 steps; a map fans out to 5,000), joined by the group's database barrier."""
    if mapped:
        fan = {
            "id": "fan",
            "action": "parallel_group",
            "with": {
                "items": f"{{{{ range({width}) | list }}}}",
                "step": {"action": "transform", "with": {}},
            },
        }
        document_steps = [fan, _step("join", ["fan"])]
    else:
        branches = [_step(f"f{i}", []) for i in range(width)]
        document_steps = [*branches, _step("join", [b["id"] for b in branches])]

    def canvas(timeout: float) -> None:
        _await(chord(group(_noops(width)), noop.si()), timeout)

    def driver(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        _await(group(_noops(width)), _left(deadline))
        _await(noop.si(), _left(deadline))

    return Shape(
        key=f"fanout_{width}",
        label=f"fan-out x{width} + fan-in",
        steps=width + 1,
        document=_workflow(f"bench_fanout_{width}", document_steps),
        raw={"raw: chord(group, noop)": canvas, "raw: driver, group.get() then join": driver},
    )


def diamond_shape(layers: int, width: int = DIAMOND_WIDTH) -> Shape:
    """`layers` layers of `width` parallel steps; each step depends on the whole previous layer."""
    steps: list[dict[str, Any]] = []
    previous: list[str] = []
    for layer in range(layers):
        current = [f"l{layer}_{j}" for j in range(width)]
        steps.extend(_step(step_id, previous) for step_id in current)
        previous = current

    def canvas(timeout: float) -> None:
        _await(chain(*[group(_noops(width)) for _ in range(layers)]), timeout)

    def driver(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(layers):
            _await(group(_noops(width)), _left(deadline))

    return Shape(
        key="diamond",
        label=f"diamond {layers} layers x{width}",
        steps=layers * width,
        document=_workflow(f"bench_diamond_{layers}x{width}", steps),
        raw={"raw: chain(group, group, ...)": canvas, "raw: driver, group.get() per layer": driver},
    )


def all_shapes(scale: float) -> list[Shape]:
    """The five shapes at `scale` x the full sizes (at least one step per dimension)."""

    def scaled(full: int) -> int:
        return max(1, round(full * scale))

    return [
        chain_shape(scaled(FULL_CHAIN)),
        chain_shape(scaled(FULL_CHAIN), fused=False),
        fanout_shape(scaled(FULL_FANOUT)),
        fanout_shape(scaled(FULL_WIDE_FANOUT), mapped=True),
        diamond_shape(scaled(FULL_LAYERS)),
    ]

"""Incremental planning: ready steps grow into linear segments; nothing waits on unfinished deps."""

from __future__ import annotations

from celery import Celery
from celery.canvas import _chain, group

from agent33.definitions.loader import parse_workflow
from agent33.engine.planner import build_canvas, ready_segments
from agent33.engine.readiness import SEGMENT_LOOKAHEAD, neighbourhood
from agent33.engine.states import StepState

P, S, F = StepState.PENDING, StepState.SUCCEEDED, StepState.FAILED

DIAMOND = parse_workflow(
    {
        "name": "diamond",
        "steps": [
            {"id": "a", "action": "transform"},
            {"id": "b", "action": "transform", "depends_on": ["a"]},
            {"id": "b2", "action": "transform", "depends_on": ["b"]},
            {"id": "c", "action": "transform", "depends_on": ["a"]},
            {"id": "d", "action": "transform", "depends_on": ["b2", "c"]},
        ],
    }
)


def test_linear_run_is_one_segment() -> None:
    linear = parse_workflow(
        {
            "name": "line",
            "steps": [
                {"id": "x", "action": "transform"},
                {"id": "y", "action": "transform", "depends_on": ["x"]},
                {"id": "z", "action": "transform", "depends_on": ["y"]},
            ],
        }
    )
    assert ready_segments(linear, {"x": P, "y": P, "z": P}) == [["x", "y", "z"]]


def test_fan_out_gives_one_segment_per_branch_and_fan_in_waits() -> None:
    assert ready_segments(DIAMOND, {"a": P, "b": P, "b2": P, "c": P, "d": P}) == [["a"]]
    states = {"a": S, "b": P, "b2": P, "c": P, "d": P}
    assert ready_segments(DIAMOND, states) == [["b", "b2"], ["c"]]
    states = {"a": S, "b": S, "b2": S, "c": StepState.RUNNING, "d": P}
    assert ready_segments(DIAMOND, states) == []
    states = {"a": S, "b": S, "b2": S, "c": S, "d": P}
    assert ready_segments(DIAMOND, states) == [["d"]]


def test_failed_dependency_blocks_unless_continue() -> None:
    assert ready_segments(DIAMOND, {"a": F, "b": P, "b2": P, "c": P, "d": P}) == []


def test_canvas_shapes() -> None:
    app = Celery("planner-test")
    item = {"step_run_id": "1", "step_id": "b", "queue": "steps"}
    single = build_canvas({"segments": [[item]]}, app)
    assert single.task == "agent33.step.run" and single.immutable
    chained = build_canvas({"segments": [[item, {**item, "step_run_id": "2"}]]}, app)
    assert isinstance(chained, _chain) and len(chained.tasks) == 2
    grouped = build_canvas(
        {"segments": [[item], [{**item, "queue": "llm", "soft_time_limit": 5, "time_limit": 10}]]},
        app,
    )
    assert isinstance(grouped, group)
    second = grouped.tasks[1]
    assert second.options["queue"] == "llm" and second.options["time_limit"] == 10


def test_a_long_chain_is_read_and_dispatched_in_bounded_pieces() -> None:
    length = 3 * SEGMENT_LOOKAHEAD
    chain = parse_workflow(
        {
            "name": "long",
            "steps": [{"id": "s0", "action": "transform"}]
            + [
                {"id": f"s{n}", "action": "transform", "depends_on": [f"s{n - 1}"]}
                for n in range(1, length)
            ],
        }
    )
    near = neighbourhood(chain, "s0")
    assert near == {f"s{n}" for n in range(SEGMENT_LOOKAHEAD + 2)}
    assert len(neighbourhood(chain, f"s{length // 2}")) == len(near), "flat along the chain"
    # The planner, given only that neighbourhood, sends the piece it was given...
    states = {sid: (S if sid == "s0" else P) for sid in near}
    (piece,) = ready_segments(chain, states)
    assert piece == [f"s{n}" for n in range(1, SEGMENT_LOOKAHEAD + 2)]
    # ...and the end of that piece leads to the next one.
    last = piece[-1]
    assert f"s{int(last[1:]) + 1}" in neighbourhood(chain, last)

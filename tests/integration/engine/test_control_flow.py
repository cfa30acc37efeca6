"""Every control-flow feature through the real broker, worker and database."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from agent33.db import session_scope
from agent33.db.models import StepRun
from agent33.engine.actions import ActionContext, ActionFailed, register
from tests.integration.engine.helpers import start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")
CALLS: dict[str, int] = {}
_lock = threading.Lock()


@register("test_flaky")
def flaky(context: ActionContext) -> Any:
    """Fails until attempt `succeed_on`; counts calls per run."""
    with _lock:
        CALLS[context.run_id] = CALLS.get(context.run_id, 0) + 1
    if context.attempt < int(context.params.get("succeed_on", 1)):
        raise ActionFailed(f"flaky failure on attempt {context.attempt}", retryable=True)
    return {"attempt": context.attempt}


@register("test_sleep")
def sleep(context: ActionContext) -> Any:
    time.sleep(float(context.params["seconds"]))
    return {"slept": context.params["seconds"]}


def _wf(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "inputs": {"type": "object"}, "steps": steps, **extra}


def test_conditional_skips_the_branch_not_chosen_and_joins() -> None:
    doc = _wf(
        "cond",
        [
            {
                "id": "route",
                "action": "conditional",
                "with": {
                    "branches": [{"when": "inputs.kind == 'a'", "next": ["do_a"]}],
                    "default": ["do_b"],
                },
            },
            {"id": "do_a", "action": "transform", "depends_on": ["route"], "with": {"v": "A"}},
            {"id": "after_a", "action": "transform", "depends_on": ["do_a"], "with": {"v": "A2"}},
            {"id": "do_b", "action": "transform", "depends_on": ["route"], "with": {"v": "B"}},
            {
                "id": "merge",
                "action": "transform",
                "depends_on": ["after_a", "do_b"],
                "with": {"a": "{{ steps.after_a.state }}", "b": "{{ steps.do_b.state }}"},
            },
        ],
    )
    run = wait_for(start(doc, {"kind": "b"}))
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert steps["route"].output["chosen"] == ["do_b"]
    assert (steps["do_a"].state, steps["after_a"].state) == ("skipped", "skipped")
    assert steps["merge"].output == {"a": "skipped", "b": "succeeded"}


def test_when_false_skips_one_step_only() -> None:
    doc = _wf(
        "when",
        [
            {"id": "a", "action": "transform", "when": "inputs.go", "with": {"v": 1}},
            {"id": "b", "action": "transform", "depends_on": ["a"], "with": {"v": 2}},
        ],
    )
    run = wait_for(start(doc, {"go": False}))
    assert [s.state for s in run.steps] == ["skipped", "succeeded"]


def test_dynamic_map_fans_out_and_joins_in_order() -> None:
    doc = _wf(
        "mapper",
        [
            {
                "id": "list",
                "action": "transform",
                "with": {"value": "{{ range(inputs.n) | list }}"},
            },
            {
                "id": "fan",
                "action": "parallel_group",
                "depends_on": ["list"],
                "with": {
                    "items": "{{ steps.list.output }}",
                    "step": {"action": "transform", "with": {"value": "{{ item * 10 }}"}},
                },
            },
            {
                "id": "total",
                "action": "transform",
                "depends_on": ["fan"],
                "with": {"value": "{{ steps.fan.output | sum }}"},
            },
        ],
        outputs={"total": "{{ steps.total.output }}", "items": "{{ steps.fan.output }}"},
    )
    run = wait_for(start(doc, {"n": 12}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"total": 660, "items": [i * 10 for i in range(12)]}
    children = [s for s in run.steps if s.parent_id is not None]
    assert len(children) == 12 and all(c.state == "succeeded" for c in children)
    empty = wait_for(start({**doc, "name": "mapper_empty"}, {"n": 0}))
    assert empty.state == "succeeded" and empty.outputs == {"total": 0, "items": []}


def test_static_branches_run_in_parallel() -> None:
    doc = _wf(
        "branches",
        [
            {
                "id": "fork",
                "action": "parallel_group",
                "with": {
                    "branches": {
                        "slow": {"action": "test_sleep", "with": {"seconds": 0.6}},
                        "also_slow": {"action": "test_sleep", "with": {"seconds": 0.6}},
                    }
                },
            },
        ],
    )
    run = wait_for(start(doc))
    assert run.state == "succeeded", run.error
    assert steps_of(run)["fork"].output == {"slow": {"slept": 0.6}, "also_slow": {"slept": 0.6}}
    with session_scope() as session:  # the recorded intervals overlap, however busy the machine
        spans = session.execute(
            select(StepRun.started_at, StepRun.finished_at).where(
                StepRun.run_id == run.id, StepRun.parent_id.is_not(None)
            )
        ).all()
    assert len(spans) == 2 and all(start and end for start, end in spans)
    assert max(start for start, _ in spans) < min(end for _, end in spans), (
        "branches did not run concurrently"
    )


def test_retries_then_success_and_retries_exhausted() -> None:
    retry = {"max": 3, "backoff": 1.0, "max_delay": 0.2}
    ok = wait_for(
        start(
            _wf(
                "retry_ok",
                [{"id": "f", "action": "test_flaky", "retries": retry, "with": {"succeed_on": 3}}],
            )
        )
    )
    assert ok.state == "succeeded" and steps_of(ok)["f"].attempt == 3
    assert CALLS[str(ok.id)] == 3
    bad = wait_for(
        start(
            _wf(
                "retry_bad",
                [
                    {
                        "id": "f",
                        "action": "test_flaky",
                        "retries": {**retry, "max": 1},
                        "with": {"succeed_on": 9},
                    }
                ],
            )
        )
    )
    assert bad.state == "failed"
    step = steps_of(bad)["f"]
    assert step.state == "failed" and step.attempt == 2
    assert "flaky failure on attempt 2" in step.error["message"]
    assert bad.error["step"] == "f"


def test_timeout_fails_the_step_with_a_clear_reason() -> None:
    run = wait_for(
        start(
            _wf(
                "slowpoke",
                [{"id": "s", "action": "test_sleep", "timeout": 0.3, "with": {"seconds": 2}}],
            )
        )
    )
    assert run.state == "failed"
    assert steps_of(run)["s"].error["message"] == "step timed out after 0.3s"


def test_on_error_continue_and_fallback() -> None:
    doc = _wf(
        "errors",
        [
            {
                "id": "a",
                "action": "transform",
                "on_error": "continue",
                "with": {"x": "{{ inputs.nope }}"},
            },
            {
                "id": "b",
                "action": "transform",
                "on_error": "b_fallback",
                "with": {"x": "{{ 1 // 0 }}"},
            },
            {"id": "b_fallback", "action": "transform", "with": {"x": "rescued"}},
            {
                "id": "c",
                "action": "transform",
                "depends_on": ["a", "b"],
                "with": {"from_b": "{{ steps.b.output.x }}", "a_state": "{{ steps.a.state }}"},
            },
            {"id": "unused_fallback", "action": "transform", "with": {}},
            {"id": "d", "action": "transform", "on_error": "unused_fallback", "with": {}},
        ],
    )
    run = wait_for(start(doc))
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert steps["a"].state == "failed" and steps["b"].state == "failed"
    assert steps["c"].output == {"from_b": "rescued", "a_state": "failed"}
    assert steps["unused_fallback"].state == "skipped"


def test_failure_cancels_the_rest_and_names_the_step() -> None:
    doc = _wf(
        "fails",
        [
            {"id": "boom", "action": "transform", "with": {"x": "{{ inputs.missing }}"}},
            {"id": "never", "action": "transform", "depends_on": ["boom"], "with": {}},
        ],
    )
    run = wait_for(start(doc))
    assert run.state == "failed" and run.error["step"] == "boom"
    assert "inputs.missing" in run.error["message"] or "missing" in run.error["message"]
    assert steps_of(run)["never"].state == "cancelled"


def test_durable_wait_seconds() -> None:
    started = time.monotonic()
    run = wait_for(start(_wf("waiter", [{"id": "w", "action": "wait", "with": {"seconds": 2.5}}])))
    assert run.state == "succeeded"
    assert time.monotonic() - started >= 2.4
    assert steps_of(run)["w"].output == {"waited_seconds": 2.5}


def test_sub_workflow_returns_the_child_outputs() -> None:
    child = _wf(
        "child_flow",
        [{"id": "c", "action": "transform", "with": {"v": "{{ inputs.x * 2 }}"}}],
        outputs={"doubled": "{{ steps.c.output.v }}"},
    )
    from tests.integration.engine.helpers import save

    save(child)
    parent = _wf(
        "parent_flow",
        [
            {
                "id": "sub",
                "action": "sub_workflow",
                "with": {"workflow": "child_flow", "inputs": {"x": 21}},
            },
            {
                "id": "use",
                "action": "transform",
                "depends_on": ["sub"],
                "with": {"value": "{{ steps.sub.output.outputs.doubled }}"},
            },
        ],
    )
    run = wait_for(start(parent))
    assert run.state == "succeeded", run.error
    assert steps_of(run)["use"].output == 42
    bad = wait_for(
        start(
            _wf(
                "parent_bad",
                [
                    {
                        "id": "sub",
                        "action": "sub_workflow",
                        "with": {"workflow": "child_flow", "inputs": {"x": None}},
                    }
                ],
            )
        )
    )
    assert bad.state == "failed" and "sub-run" in bad.error["message"]

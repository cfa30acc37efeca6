"""Rerun from a step through the real broker, worker, database and a fake model server that
counts calls: earlier steps are copied (no model call), the step and what follows run again."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.definitions.agents import sync_agents
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.engine.lifecycle import approve_step, cancel_run
from agent33.engine.rerun import InvalidRerun, RerunResult, rerun_run
from agent33.errors import Conflict, ValidationFailed
from tasks.app import swap_settings
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import events_of, save, start, steps_of, wait_for

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]
EXECUTED: list[tuple[str, str]] = []
_lock = threading.Lock()


@register("test_rerun_count")
def counted(context: ActionContext) -> Any:
    """Records (run, step) of every execution, so a copied step shows it never ran."""
    with _lock:
        EXECUTED.append((context.run_id, context.step_id))
    return {"item": context.context.get("item"), "step": context.step_id}


@register("test_rerun_picky")
def picky(context: ActionContext) -> Any:
    """Like test_rerun_count, but fails for the item named by `bad`."""
    if context.context.get("item") == context.params.get("bad"):
        raise ActionFailed(f"item {context.params.get('bad')!r} refused")
    return counted(context)


@pytest.fixture
def worker_settings(settings: Settings, fake_ollama: Any) -> Iterator[Settings]:
    own = settings.replace(ollama_base_url=fake_ollama.url)
    previous = swap_settings(own)
    with session_scope() as session:
        sync_agents(session=session, directory=own.definitions_dir)
    yield own
    if previous is not None:
        swap_settings(previous)


def _rerun(settings: Settings, run_id: uuid.UUID, step: str, **kwargs: Any) -> RerunResult:
    with session_scope() as session:
        result = rerun_run(
            session=session, settings=settings, run_id=run_id, from_step=step, **kwargs
        )
    flush_outbox(result.outbox_ids)
    return result


def _five_model_steps() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "s1", "action": "invoke_agent", "with": {"agent": "assistant", "input": "one"}}
    ]
    for n in range(2, 6):
        steps.append(
            {
                "id": f"s{n}",
                "action": "invoke_agent",
                "depends_on": [f"s{n - 1}"],
                "with": {"agent": "assistant", "input": f"{{{{ steps.s{n - 1}.output.content }}}}"},
            }
        )
    return {
        "name": "five_calls",
        "inputs": {"type": "object"},
        "steps": steps,
        "outputs": {"last": "{{ steps.s5.output.content }}"},
    }


def _chats(fake: Any) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


def test_rerun_from_the_third_of_five_model_steps_calls_the_model_three_times(
    worker_settings: Settings, fake_ollama: Any
) -> None:
    original = wait_for(start(_five_model_steps()))
    assert original.state == "succeeded", original.error
    assert len(_chats(fake_ollama)) == 5
    before = steps_of(original)

    result = _rerun(worker_settings, original.id, "s3", by="ops")
    assert result.copied == ["s1", "s2"]
    rerun = wait_for(result.run_id)

    assert rerun.state == "succeeded", rerun.error
    chats = _chats(fake_ollama)
    assert len(chats) == 8, "the rerun called the model for s1 or s2"
    # s3 was asked with s2's copied answer: the earlier outputs carried over.
    assert chats[5]["messages"][-1]["content"] == before["s2"].output["content"]
    after = steps_of(rerun)
    assert rerun.rerun_of == original.id and rerun.workflow_id == original.workflow_id
    for step_id in ("s1", "s2"):
        assert after[step_id].copied_from == original.id
        assert after[step_id].state == "succeeded"
        assert after[step_id].output == before[step_id].output
    for step_id in ("s3", "s4", "s5"):
        assert after[step_id].copied_from is None and after[step_id].state == "succeeded"
    assert rerun.outputs == original.outputs
    rerun_event = next(e for e in events_of(rerun.id) if e.kind == "run.rerun")
    assert rerun_event.data == {"rerun_of": str(original.id), "from": "s3", "copied": ["s1", "s2"]}


FAILING = {
    "name": "needs_key",
    "inputs": {"type": "object", "properties": {"key": {"type": "string"}}},
    "steps": [
        {"id": "first", "action": "test_rerun_count"},
        {
            "id": "use",
            "action": "transform",
            "depends_on": ["first"],
            "with": {"key": "{{ inputs.key }}"},
        },
    ],
    "outputs": {"key": "{{ steps.use.output.key }}"},
}


def test_rerun_a_failed_run_with_new_inputs(settings: Settings) -> None:
    failed = wait_for(start(FAILING))
    assert failed.state == "failed"
    result = _rerun(settings, failed.id, "use", inputs={"key": "k1"})
    rerun = wait_for(result.run_id)
    assert rerun.state == "succeeded", rerun.error
    assert rerun.inputs == {"key": "k1"} and rerun.outputs == {"key": "k1"}
    assert steps_of(rerun)["first"].copied_from == failed.id
    assert (str(rerun.id), "first") not in EXECUTED
    with pytest.raises(ValidationFailed) as bad:  # merged inputs are checked like any run's
        _rerun(settings, failed.id, "use", inputs={"key": 5})
    assert bad.value.code == "validation_error"


def test_rerun_a_cancelled_run_and_an_unknown_step_or_a_running_run(settings: Settings) -> None:
    gated = {
        "name": "gated_rerun",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "prepare", "action": "test_rerun_count"},
            {"id": "gate", "action": "wait", "depends_on": ["prepare"], "with": {"approval": True}},
        ],
    }
    run_id = start(gated)
    wait_for(run_id, ["waiting"])
    with pytest.raises(Conflict):  # still going
        _rerun(settings, run_id, "gate")
    with session_scope() as session:
        cancel_run(session=session, run_id=run_id, by="ops")
    with pytest.raises(InvalidRerun) as unknown:
        _rerun(settings, run_id, "nope")
    assert unknown.value.http_status == 422 and "from" in unknown.value.fields
    with pytest.raises(InvalidRerun):
        _rerun(settings, run_id, "gate[3]")

    result = _rerun(settings, run_id, "gate")
    wait_for(result.run_id, ["waiting"])
    with session_scope() as session:
        approved = approve_step(session=session, run_id=result.run_id, step_id="gate", by="ops")
    flush_outbox(approved.outbox_ids)
    rerun = wait_for(result.run_id)
    assert rerun.state == "succeeded"
    assert steps_of(rerun)["prepare"].copied_from == run_id
    assert (str(rerun.id), "prepare") not in EXECUTED


def test_rerun_one_child_of_a_map(settings: Settings) -> None:
    doc = {
        "name": "map_rerun",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "first", "action": "test_rerun_count"},
            {
                "id": "fan",
                "action": "parallel_group",
                "depends_on": ["first"],
                "with": {"items": ["a", "b", "c"], "step": {"action": "test_rerun_count"}},
            },
            {"id": "after", "action": "test_rerun_count", "depends_on": ["fan"]},
        ],
    }
    original = wait_for(start(doc))
    assert original.state == "succeeded", original.error
    result = _rerun(settings, original.id, "fan[1]")
    assert sorted(result.copied) == ["fan[0]", "fan[2]", "first"]
    rerun = wait_for(result.run_id)
    assert rerun.state == "succeeded", rerun.error
    ran = sorted(step for run, step in EXECUTED if run == str(rerun.id))
    assert ran == ["after", "fan[1]"]
    steps = steps_of(rerun)
    assert [o["item"] for o in steps["fan"].output] == ["a", "b", "c"]  # item order kept
    assert steps["fan[0]"].copied_from == original.id and steps["fan[1]"].copied_from is None


def test_rerun_from_a_step_inside_a_sub_workflow(settings: Settings) -> None:
    child = {
        "name": "inner_flow",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "x", "action": "test_rerun_count"},
            {"id": "y", "action": "test_rerun_count", "depends_on": ["x"]},
        ],
        "outputs": {"y": "{{ steps.y.output.step }}"},
    }
    save(child)
    parent = {
        "name": "outer_flow",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "a", "action": "test_rerun_count"},
            {
                "id": "sub",
                "action": "sub_workflow",
                "depends_on": ["a"],
                "with": {"workflow": "inner_flow"},
            },
            {"id": "after", "action": "test_rerun_count", "depends_on": ["sub"]},
        ],
        "outputs": {"y": "{{ steps.sub.output.outputs.y }}"},
    }
    original = wait_for(start(parent))
    assert original.state == "succeeded", original.error
    old_sub_run = uuid.UUID(steps_of(original)["sub"].output["run_id"])

    with pytest.raises(InvalidRerun):  # `a` starts no sub-run
        _rerun(settings, original.id, "a/x")
    with pytest.raises(InvalidRerun):  # no step `z` in the sub-workflow
        _rerun(settings, original.id, "sub/z")
    result = _rerun(settings, original.id, "sub/y")
    assert result.copied == ["a"]
    rerun = wait_for(result.run_id)

    assert rerun.state == "succeeded", rerun.error
    assert rerun.outputs == {"y": "y"}
    sub = steps_of(rerun)["sub"]
    new_sub_run = uuid.UUID(sub.output["run_id"])
    assert new_sub_run != old_sub_run
    with session_scope() as session:
        inner = session.get(Run, new_sub_run)
        assert inner is not None
        assert inner.rerun_of == old_sub_run and inner.parent_step_run_id == sub.id
        assert inner.state == "succeeded"
    assert sorted(s for r, s in EXECUTED if r == str(rerun.id)) == ["after"]
    assert sorted(s for r, s in EXECUTED if r == str(new_sub_run)) == ["y"]


def test_a_conditionals_decision_stands_in_a_rerun(settings: Settings) -> None:
    doc = {
        "name": "branchy_rerun",
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "pick",
                "action": "conditional",
                "with": {"branches": [{"when": "true", "next": ["left"]}], "default": ["right"]},
            },
            {"id": "left", "action": "test_rerun_count", "depends_on": ["pick"]},
            {"id": "right", "action": "test_rerun_count", "depends_on": ["pick"]},
        ],
    }
    original = wait_for(start(doc))
    assert {k: s.state for k, s in steps_of(original).items()} == {
        "pick": "succeeded",
        "left": "succeeded",
        "right": "skipped",
    }
    nothing = _rerun(settings, original.id, "right")  # skipped by `pick`, which is not rerun
    assert sorted(nothing.copied) == ["left", "pick", "right"]
    assert wait_for(nothing.run_id).state == "succeeded"
    assert not [s for r, s in EXECUTED if r == str(nothing.run_id)]
    again = wait_for(_rerun(settings, original.id, "pick").run_id)
    assert {k: s.state for k, s in steps_of(again).items()} == {
        "pick": "succeeded",
        "left": "succeeded",
        "right": "skipped",
    }
    assert [s for r, s in EXECUTED if r == str(again.id)] == ["left"]


def test_a_failed_map_upstream_reruns_only_its_failed_children(settings: Settings) -> None:
    doc = {
        "name": "picky_map",
        "inputs": {"type": "object", "properties": {"bad": {"type": "string"}}},
        "steps": [
            {
                "id": "fan",
                "action": "parallel_group",
                "with": {
                    "items": ["a", "b", "c"],
                    "step": {"action": "test_rerun_picky", "with": {"bad": "{{ inputs.bad }}"}},
                },
            },
            {"id": "after", "action": "test_rerun_count", "depends_on": ["fan"]},
        ],
    }
    original = wait_for(start(doc, {"bad": "b"}))
    assert original.state == "failed"
    result = _rerun(settings, original.id, "after", inputs={"bad": "none"})
    assert sorted(result.copied) == ["fan[0]", "fan[2]"]
    rerun = wait_for(result.run_id)
    assert rerun.state == "succeeded", rerun.error
    assert sorted(s for r, s in EXECUTED if r == str(rerun.id)) == ["after", "fan[1]"]
    assert [o["item"] for o in steps_of(rerun)["fan"].output] == ["a", "b", "c"]

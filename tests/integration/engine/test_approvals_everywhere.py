"""Approvals inside static parallel branches and map children, and approval of an agent's tool
calls (the step parks on the proposed call; approve runs it, reject tells the model), through
the real broker and worker with a fake model server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from agent33.cli import cli as main_group
from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import parse_agent, save_agent
from agent33.engine.lifecycle import ControlResult, approve_step
from agent33.engine.service import get_run
from agent33.errors import Conflict
from agent33.tools import known_tools
from tasks.app import swap_settings
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import start, steps_of, wait_for
from tests.integration.engine.live_api import live_cli_env

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]


def _do(call: Any, **kwargs: Any) -> ControlResult:
    with session_scope() as session:
        result: ControlResult = call(session=session, **kwargs)
    flush_outbox(result.outbox_ids)
    return result


def _parked(run_id: uuid.UUID, step_id: str, timeout: float = 30.0) -> Any:
    """The step once it waits for an approval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            step = steps_of(get_run(session=session, run_id=run_id)).get(step_id)
            if step is not None and step.waiting_for == "approval":
                return step
        time.sleep(0.05)
    raise AssertionError(f"{step_id} never waited for approval")


def test_approvals_inside_static_parallel_branches() -> None:
    run_id = start(
        {
            "name": "branch_gates",
            "inputs": {"type": "object"},
            "steps": [
                {
                    "id": "fork",
                    "action": "parallel_group",
                    "with": {
                        "branches": {
                            "legal": {"action": "wait", "with": {"approval": True}},
                            "finance": {"action": "wait", "with": {"approval": True}},
                            "auto": {"action": "transform", "with": {"v": 1}},
                        }
                    },
                },
                {
                    "id": "after",
                    "action": "transform",
                    "depends_on": ["fork"],
                    "with": {"who": "{{ steps.fork.output.legal.by }}"},
                },
            ],
        }
    )
    _parked(run_id, "fork[legal]")
    _parked(run_id, "fork[finance]")
    assert wait_for(run_id, ["waiting"]).state == "waiting"
    _do(approve_step, run_id=run_id, step_id="fork[legal]", by="lee")
    with session_scope() as session:
        run = get_run(session=session, run_id=run_id)
        assert steps_of(run)["after"].state == "pending", "one branch still awaits its approval"
    _do(approve_step, run_id=run_id, step_id="fork[finance]", by="fin")
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    assert steps_of(run)["after"].output == {"who": "lee"}
    assert steps_of(run)["fork"].output["finance"]["by"] == "fin"


def test_a_rejected_branch_fails_the_group_and_the_run() -> None:
    run_id = start(
        {
            "name": "branch_reject",
            "inputs": {"type": "object"},
            "steps": [
                {
                    "id": "fork",
                    "action": "parallel_group",
                    "with": {"branches": {"gate": {"action": "wait", "with": {"approval": True}}}},
                }
            ],
        }
    )
    _parked(run_id, "fork[gate]")
    _do(approve_step, run_id=run_id, step_id="fork[gate]", approved=False, by="bob")
    run = wait_for(run_id)
    assert run.state == "failed"
    assert steps_of(run)["fork[gate]"].error["message"] == "rejected by bob"


# --- tool-call approval -------------------------------------------------------------------


@pytest.fixture
def worker_settings(settings: Settings, fake_ollama: Any) -> Iterator[Settings]:
    """Point the in-process worker at this test's fake model server."""
    own = settings.replace(ollama_base_url=fake_ollama.url)
    previous = swap_settings(own)
    yield own
    if previous is not None:
        swap_settings(previous)


def _save_careful_agent() -> None:
    document = {
        "name": "careful",
        "model": "llama3.2",
        "system_prompt": "Use the calculator.",
        "tools": [{"name": "calculator", "approval": "required"}, "current_time"],
        "max_tool_rounds": 3,
    }
    agent = parse_agent(document, tools=known_tools())
    assert agent.approval_tools == frozenset({"calculator"})
    with session_scope() as session:
        save_agent(session=session, agent=agent, document=document)


def _branches_with_agent(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "fork",
                "action": "parallel_group",
                "with": {
                    "branches": {
                        "ask": {
                            "action": "invoke_agent",
                            "with": {"agent": "careful", "input": "what is 6 * 7?"},
                        },
                        "side": {"action": "transform", "with": {"v": "ok"}},
                    }
                },
            },
        ],
    }


def _chat_bodies(fake: Any) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


def test_a_tool_call_approval_in_a_parallel_branch_parks_then_continues(
    worker_settings: Settings, fake_ollama: Any, client: Any, admin_headers: dict[str, str]
) -> None:
    _save_careful_agent()
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "6 * 7"}}])
    fake_ollama.script(content="It is 42.")
    run_id = start(_branches_with_agent("tool_gate"))
    step = _parked(run_id, "fork[ask]")
    assert step.state == "running" and step.lease_expires_at is None, "no worker is held"
    assert step.output["tool_call"]["name"] == "calculator"
    assert step.output["tool_call"]["arguments"] == {"expression": "6 * 7"}
    assert wait_for(run_id, ["waiting"]).state == "waiting"
    assert len(_chat_bodies(fake_ollama)) == 1, "the model was asked once; the tool did not run"

    shown = client.get(f"/api/v1/runs/{run_id}", headers=admin_headers).get_json()
    assert shown["awaiting"] == [
        {
            "step_id": "fork[ask]",
            "prompt": "agent 'careful' wants to call tool 'calculator'",
            "tool_call": step.output["tool_call"],
        }
    ]
    approved = client.post(
        f"/api/v1/runs/{run_id}/approve",
        json={"step_id": "fork[ask]", "comment": "fine"},
        headers=admin_headers,
    )
    assert approved.status_code == 200, approved.get_json()
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    output = steps_of(run)["fork[ask]"].output
    assert output["content"] == "It is 42."
    call = output["tool_calls"][0]
    assert call["result"] == {"expression": "6 * 7", "result": 42}
    assert call["approval"]["approved"] is True and call["approval"]["comment"] == "fine"
    assert output["model_calls"] == 2, "the parked turn's first model call is still counted"
    chats = _chat_bodies(fake_ollama)
    assert len(chats) == 2, "the conversation continued; the first call was not repeated"
    fed_back = chats[1]["messages"][-1]
    assert fed_back["role"] == "tool" and json.loads(fed_back["content"])["result"] == 42
    assert steps_of(run)["fork"].output["side"] == {"v": "ok"}
    with pytest.raises(Conflict):
        _do(approve_step, run_id=run_id, step_id="fork[ask]", by="ada")
    assert client.get(f"/api/v1/runs/{run_id}", headers=admin_headers).get_json()["awaiting"] == []


@pytest.fixture
def cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    with live_cli_env(settings) as env:
        yield env


def test_a_rejected_tool_call_sends_the_model_a_refusal(
    worker_settings: Settings, fake_ollama: Any, cli_env: dict[str, str]
) -> None:
    _save_careful_agent()
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "6 * 7"}}])
    fake_ollama.script(content="I was not allowed to calculate.")
    run_id = start(_branches_with_agent("tool_reject"))
    _parked(run_id, "fork[ask]")
    runner = CliRunner()
    shown = runner.invoke(main_group, ["runs", "show", str(run_id)], env=cli_env)
    assert shown.exit_code == 0, shown.output
    assert (
        "awaiting approval: fork[ask] agent 'careful' wants to call tool 'calculator': "
        'tool calculator {"expression": "6 * 7"}'
    ) in shown.output
    args = ["runs", "approve", str(run_id), "fork[ask]", "--reject", "--comment", "no"]
    rejected = runner.invoke(main_group, args, env=cli_env)
    assert rejected.exit_code == 0 and "rejected" in rejected.output, rejected.output
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    output = steps_of(run)["fork[ask]"].output
    assert output["content"] == "I was not allowed to calculate."
    assert "result" not in output["tool_calls"][0]
    refusal = json.loads(_chat_bodies(fake_ollama)[1]["messages"][-1]["content"])
    assert refusal["error"].startswith("the call of tool 'calculator' was rejected by ")
    assert refusal["error"].endswith(": no")
    again = runner.invoke(main_group, args, env=cli_env)
    assert again.exit_code != 0 and "not awaiting an approval" in str(again.exception)


def test_approvals_inside_map_children_and_a_tool_call_in_a_map_child(
    worker_settings: Settings, fake_ollama: Any
) -> None:
    _save_careful_agent()
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "2 + 2"}}])
    fake_ollama.script(content="Four.")
    run_id = start(
        {
            "name": "map_tool_gate",
            "inputs": {"type": "object"},
            "steps": [
                {
                    "id": "gates",
                    "action": "parallel_group",
                    "with": {
                        "items": ["a", "b"],
                        "step": {"action": "wait", "with": {"approval": True}},
                    },
                },
                {
                    "id": "asks",
                    "action": "parallel_group",
                    "with": {
                        "items": ["2 + 2"],
                        "step": {
                            "action": "invoke_agent",
                            "with": {"agent": "careful", "input": "{{ item }}"},
                        },
                    },
                },
            ],
        }
    )
    parked = _parked(run_id, "asks[0]")
    assert parked.output["tool_call"]["arguments"] == {"expression": "2 + 2"}
    _parked(run_id, "gates[0]")
    _parked(run_id, "gates[1]")
    for step_id in ("asks[0]", "gates[1]", "gates[0]"):
        _do(approve_step, run_id=run_id, step_id=step_id, by="ops")
    run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    assert [o["approved"] for o in steps_of(run)["gates"].output] == [True, True]
    answer = steps_of(run)["asks"].output[0]
    assert answer["content"] == "Four." and answer["tool_calls"][0]["result"]["result"] == 4

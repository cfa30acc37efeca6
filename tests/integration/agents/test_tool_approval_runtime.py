"""The agent runtime's side of tool-call approval: park with a resumable state, resume with a
decision, and refuse where nobody can approve (a chat turn); fake Ollama, real wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent33.agents.runtime import ToolApprovalRequired, run_agent
from agent33.config import Settings
from agent33.definitions.agents import AgentDef
from agent33.llm.router import default_router

pytestmark = pytest.mark.run_control

CALL = {"name": "calculator", "arguments": {"expression": "3 * 3"}}


def _agent() -> AgentDef:
    return AgentDef(
        name="careful",
        version=1,
        model="llama3.2",
        system_prompt="Be brief.",
        tools=("calculator",),
        approval_tools=frozenset({"calculator"}),
        max_tool_rounds=2,
    )


def test_a_parked_turn_resumes_from_its_json_state(settings: Settings, fake_ollama: Any) -> None:
    router = default_router(settings.replace(ollama_base_url=fake_ollama.url))
    fake_ollama.script(tool_calls=[CALL])
    fake_ollama.script(content="Nine.")
    with pytest.raises(ToolApprovalRequired) as parked:
        run_agent(_agent(), "3 * 3?", router=router, park=True)
    assert (parked.value.call.name, parked.value.call.arguments) == (
        "calculator",
        CALL["arguments"],
    )
    state = json.loads(json.dumps(parked.value.state))  # what the step output stores
    decision = {"approved": True, "by": "ada", "comment": None}
    result = run_agent(
        _agent(),
        "3 * 3?",
        router=router,
        park=True,
        resume={**state, "decisions": {parked.value.call.id: decision}},
    )
    assert result.content == "Nine." and result.model_calls == 2
    assert result.tool_calls[0]["result"]["result"] == 9
    assert result.tool_calls[0]["approval"] == decision
    assert [m.role for m in result.messages] == ["system", "user", "assistant", "tool", "assistant"]


def test_without_anyone_to_approve_the_call_is_refused(
    settings: Settings, fake_ollama: Any
) -> None:
    router = default_router(settings.replace(ollama_base_url=fake_ollama.url))
    fake_ollama.script(tool_calls=[CALL])
    fake_ollama.script(content="I may not calculate.")
    result = run_agent(_agent(), "3 * 3?", router=router)
    assert result.content == "I may not calculate."
    assert "needs a person's approval" in result.tool_calls[0]["error"]
    sent = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert "needs a person's approval" in json.loads(sent[1]["messages"][-1]["content"])["error"]

"""The agent runtime against fake model servers speaking the real wire formats."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent33.agents.runtime import AgentOutputError, run_agent
from agent33.config import Settings
from agent33.definitions.agents import AgentDef
from agent33.llm.provider import ProviderUnavailable
from agent33.llm.router import default_router


def _router(settings: Settings, ollama: Any, openai: Any | None = None) -> Any:
    own = settings.replace(
        ollama_base_url=ollama.url, openai_base_url=(openai.url if openai else "http://127.0.0.1:9")
    )
    return default_router(own)


def _agent(**overrides: Any) -> AgentDef:
    base: dict[str, Any] = {
        "name": "t",
        "version": 1,
        "model": "llama3.2",
        "system_prompt": "Be brief.",
        "tools": ("calculator",),
        "max_tool_rounds": 2,
    }
    base.update(overrides)
    return AgentDef(**base)


def test_fallback_continues_the_same_conversation(
    settings: Settings, fake_ollama: Any, fake_openai: Any
) -> None:
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "2 + 2"}}])
    fake_ollama.fail("ok")  # the first call is answered...
    fake_ollama.fail("503", times=10)  # ...then the server goes down
    fake_openai.script(content="It is 4.")
    agent = _agent(fallbacks=("openai/gpt-4o-mini",))
    result = run_agent(agent, "what is 2 + 2?", router=_router(settings, fake_ollama, fake_openai))
    assert result.content == "It is 4." and result.provider == "openai"
    sent = [body for path, body in fake_openai.requests if path.endswith("/chat/completions")]
    messages = sent[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert json.loads(messages[-1]["content"]) == {"expression": "2 + 2", "result": 4}
    assert result.model_calls == 2 and result.usage["total_tokens"] > 0
    assert [c["provider"] for c in result.calls] == ["ollama", "openai"]
    assert (
        sum(c["prompt_tokens"] + c["completion_tokens"] for c in result.calls)
        == (result.usage["total_tokens"])
    )


def test_every_provider_down_names_them_all(settings: Settings, fake_ollama: Any) -> None:
    fake_ollama.mode = "503"
    agent = _agent(fallbacks=("openai/gpt-4o-mini",))
    with pytest.raises(ProviderUnavailable) as info:
        run_agent(agent, "hi", router=_router(settings, fake_ollama))
    message = str(info.value)
    assert "ollama/llama3.2" in message and "openai/gpt-4o-mini" in message
    assert "127.0.0.1:9" in message


def test_tool_loop_is_bounded(settings: Settings, fake_ollama: Any) -> None:
    for _ in range(5):
        fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "1"}}])
    result = run_agent(_agent(max_tool_rounds=2), "loop", router=_router(settings, fake_ollama))
    assert len(result.tool_calls) == 2 and result.model_calls == 3
    last = [b for p, b in fake_ollama.requests if p == "/api/chat"][-1]
    assert "tools" not in last or not last["tools"], "the last round offers no tools"


def test_structured_output_gets_one_repair(settings: Settings, fake_ollama: Any) -> None:
    schema = {
        "type": "object",
        "required": ["answer"],
        "properties": {"answer": {"type": "integer"}},
    }
    agent = _agent(tools=(), output_schema=schema)
    fake_ollama.script(content='{"answer": "four"}')
    fake_ollama.script(content='{"answer": 4}')
    result = run_agent(agent, "2+2?", router=_router(settings, fake_ollama))
    assert result.output == {"answer": 4} and result.model_calls == 2
    fake_ollama.script(content="no json")
    fake_ollama.script(content="still none")
    with pytest.raises(AgentOutputError, match="after one repair"):
        run_agent(agent, "2+2?", router=_router(settings, fake_ollama))

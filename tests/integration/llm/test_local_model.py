"""The embedded local model for real: SmolLM2-135M served by `agent33.llm.local_server`, started
through `agent33.llm.local_model` as `agent33 serve` starts it; a streamed chat through the API
and the `llm` worker, and an `invoke_agent` step, both answered by it with tokens counted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from agent33.config import Settings
from agent33.embedded import ManagedServer
from agent33.llm import local_model
from agent33.llm.router import default_router
from agent33.llm.types import ChatRequest, Message, Options
from tests.integration.agents.chat_support import chat_client, save_agents, sse_events
from tests.integration.engine.helpers import start, steps_of, wait_for
from tests.plugins.web import MakeApiKey

pytestmark = [pytest.mark.model, pytest.mark.timeout(180)]
MAX_TOKENS = 16
TINY = {"name": "tiny", "model": "llama3.2", "system_prompt": "Be brief.", "max_tokens": MAX_TOKENS}


def _unavailable() -> str | None:
    try:
        local_model.shipped_gguf()
    except local_model.LocalModelError as exc:
        return str(exc)
    return local_model.runtime_missing()


@pytest.fixture(scope="session")
def local_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server, started once for the session: its `/v1` URL."""
    reason = _unavailable()
    if reason:
        pytest.skip(f"the local-model extra is not installed here: {reason}")
    own = settings.replace(var_dir=tmp_path_factory.mktemp("model-var"))
    server: ManagedServer = local_model.start_local_model(own)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def model_settings(settings: Settings, local_server: str) -> Settings:
    """As `serve` hands its processes: the local model's URL set, Ollama unreachable."""
    return settings.replace(local_model_url=local_server)


def test_the_default_model_streams_from_the_local_server_with_usage(
    model_settings: Settings,
) -> None:
    router = default_router(model_settings)
    request = ChatRequest(
        model="",  # the default model: llama3.2, which the local model stands in for
        messages=(Message(role="user", content="Hello, Agent-33!"),),
        options=Options(max_tokens=MAX_TOKENS, temperature=0.0),
        stream=True,
    )
    chunks = list(router.stream(request))
    router.close()
    final = chunks[-1].response
    assert final is not None and chunks[-1].done
    assert len(chunks) > 2, "the answer arrives in pieces, not at once"
    assert final.content == "".join(c.delta for c in chunks) and final.content.strip()
    assert (final.provider, final.model) == ("local", "smollm2")
    assert final.usage.prompt_tokens > 5
    assert 0 < final.usage.completion_tokens <= MAX_TOKENS


@pytest.mark.usefixtures("committed_db", "celery_worker")
def test_a_streamed_chat_through_the_api_and_worker(
    model_settings: Settings, make_api_key: MakeApiKey
) -> None:
    save_agents([TINY])
    with chat_client(model_settings, timeout=60) as client:
        response = client.post(
            "/api/v1/chat",
            json={"agent": "tiny", "message": "Hello, Agent-33!", "stream": True},
            headers=make_api_key(["agents:read"]),
        )
    assert response.status_code == 200, response.get_data(as_text=True)
    events = sse_events(response.get_data(as_text=True))
    tokens = [data["delta"] for kind, data in events if kind == "token"]
    kind, done = events[-1]
    assert kind == "done" and len(tokens) > 1
    assert done["answer"] == "".join(tokens)
    assert (done["provider"], done["model"]) == ("local", "smollm2")
    assert 0 < done["usage"]["completion_tokens"] <= MAX_TOKENS


@pytest.mark.usefixtures("committed_db", "celery_worker")
def test_an_invoke_agent_step_is_answered_by_the_local_model(model_settings: Settings) -> None:
    from tasks.app import swap_settings

    save_agents([TINY])
    workflow = {
        "name": f"local_model_{uuid.uuid4().hex[:8]}",
        "version": 1,
        "steps": [
            {"id": "ask", "action": "invoke_agent", "with": {"agent": "tiny", "input": "Hi"}}
        ],
        "outputs": {"answer": "{{ steps.ask.output.content }}"},
    }
    previous = swap_settings(model_settings)
    try:
        run = wait_for(start(workflow), timeout=90)
    finally:
        if previous is not None:
            swap_settings(previous)
    assert run.state == "succeeded", run.error
    ask = steps_of(run)["ask"]
    assert ask.queue == "llm"
    assert (ask.output["provider"], ask.output["model"]) == ("local", "smollm2")
    assert ask.output["usage"]["prompt_tokens"] > 0
    assert 0 < ask.output["usage"]["completion_tokens"] <= MAX_TOKENS
    assert run.outputs["answer"] == ask.output["content"]


def test_bad_requests_get_a_400_naming_the_field(local_server: str) -> None:
    url = f"{local_server}/chat/completions"
    empty = requests.post(url, json={"messages": []}, timeout=10)
    assert empty.status_code == 400
    assert empty.json()["error"]["message"].startswith("messages:")
    role = requests.post(url, json={"messages": [{"role": "robot", "content": "x"}]}, timeout=10)
    assert role.status_code == 400 and "messages[0].role" in role.json()["error"]["message"]
    negative = {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}
    tokens = requests.post(url, json=negative, timeout=10)
    assert tokens.status_code == 400 and "max_tokens" in tokens.json()["error"]["message"]


def test_stop_leaves_no_process_and_a_stale_server_is_replaced(
    settings: Settings, tmp_path: Path, local_server: str
) -> None:
    own = settings.replace(var_dir=tmp_path)
    first = local_model.start_local_model(own)
    second = local_model.start_local_model(own)  # as after a `serve` killed with -9
    assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == "zombie"
    assert (tmp_path / "model" / "server.pid").read_text().strip() == str(second.pid)
    second.stop()
    assert not psutil.pid_exists(second.pid) or psutil.Process(second.pid).status() == "zombie"

"""One queue rule for an agent's model call: a model named in AGENT33_LLM_GPU_MODELS goes to
`llm.gpu` from a chat turn exactly as from a workflow step (chat used to send it to `llm`).

Real broker and worker: the queue is read from the message the API published and from the
delivery the worker received, not from the function that chose it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from agent33.config import Settings
from tests.integration.agents.chat_support import chat_client, save_agents, swapped
from tests.integration.engine.helpers import start, steps_of, wait_for
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


@pytest.fixture
def gpu_agent() -> str:
    """An agent whose model is GPU-tagged (tagged bare, named with its provider and tag), and
    `cpu-<it>`, whose model is not."""
    agent = f"gpu-{uuid.uuid4().hex[:6]}"
    save_agents(
        [
            {"name": agent, "model": "ollama/qwen2.5:latest", "system_prompt": "Be brief."},
            {"name": f"cpu-{agent}", "model": "llama3.2", "system_prompt": "Be brief."},
        ]
    )
    return agent


@pytest.fixture
def gpu_settings(settings: Settings, fake_ollama: Any) -> Settings:
    fake_ollama.models.append("qwen2.5:latest")
    return settings.replace(ollama_base_url=fake_ollama.url, llm_gpu_models=("qwen2.5",))


@pytest.fixture
def routed() -> Iterator[dict[str, list[str]]]:
    """Queues of every `agent33.llm.chat` published by this process and received by the
    in-process worker."""
    seen: dict[str, list[str]] = {"published": [], "received": []}

    def published(sender: str | None = None, routing_key: str = "", **_: Any) -> None:
        if sender == "agent33.llm.chat":
            seen["published"].append(routing_key)

    def received(sender: Any = None, task: Any = None, **_: Any) -> None:
        if task is not None and task.name == "agent33.llm.chat":
            seen["received"].append(task.request.delivery_info["routing_key"])

    signals.before_task_publish.connect(published, weak=False)
    signals.task_prerun.connect(received, weak=False)
    try:
        yield seen
    finally:
        signals.before_task_publish.disconnect(published)
        signals.task_prerun.disconnect(received)


def test_chat_sends_a_gpu_tagged_model_to_llm_gpu(
    gpu_settings: Settings,
    gpu_agent: str,
    routed: dict[str, list[str]],
    make_api_key: MakeApiKey,
    fake_ollama: Any,
) -> None:
    headers = make_api_key(["agents:read"])
    fake_ollama.script(content="on the GPU")
    fake_ollama.script(content="on the CPU")
    with chat_client(gpu_settings, timeout=15) as client:
        gpu, cpu = (
            client.post("/api/v1/chat", json={"message": "hi", "agent": name}, headers=headers)
            for name in (gpu_agent, f"cpu-{gpu_agent}")
        )
    assert gpu.status_code == 200, gpu.json
    assert cpu.status_code == 200, cpu.json
    assert routed["published"] == ["llm.gpu", "llm"]
    assert routed["received"] == ["llm.gpu", "llm"]


def test_a_workflow_step_of_the_same_agent_goes_to_llm_gpu_too(
    gpu_settings: Settings, gpu_agent: str, fake_ollama: Any
) -> None:
    fake_ollama.script(content="on the GPU")
    fake_ollama.script(content="on the CPU")
    document = {
        "name": f"wf-{gpu_agent}",
        "version": 1,
        "steps": [
            {"id": "gpu", "action": "invoke_agent", "with": {"agent": gpu_agent, "input": "hi"}},
            {
                "id": "cpu",
                "action": "invoke_agent",
                "depends_on": ["gpu"],
                "with": {"agent": f"cpu-{gpu_agent}", "input": "hi"},
            },
        ],
    }
    with swapped(gpu_settings):
        run = wait_for(start(document))
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert (steps["gpu"].queue, steps["cpu"].queue) == ("llm.gpu", "llm")

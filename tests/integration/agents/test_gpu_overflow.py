"""GPU-local first, remote when `llm.gpu` is saturated: through the real broker and worker, a
slowed fake GPU model server (Ollama) and a fake remote provider (OpenAI-compatible).

The load is what kombu and the workers really leave in Redis: steps waiting in `llm.gpu` (the
chat test), calls running on the GPU model (the workflow test). The backlog is made of steps:
their messages are acknowledged late, so those a busy worker cannot take stay in Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from agent33.config import Settings
from agent33.llm import overflow
from tests.integration.agents.chat_support import chat_client, save_agents, swapped
from tests.integration.engine.helpers import events_of, start, steps_of, wait_for
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

LATENCY_S = 2.0


@pytest.fixture
def gpu_agent() -> str:
    """An agent on a GPU-tagged model whose own remote fallback is the fake's `gpt-4o-mini`."""
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    save_agents(
        [
            {
                "name": name,
                "model": "ollama/qwen2.5",
                "remote_fallback": "openai/gpt-4o-mini",
                "system_prompt": "Be brief.",
            }
        ]
    )
    return name


def _overflowing(
    settings: Settings, celery_app: Celery, fake_ollama: Any, fake_openai: Any, **limits: int
) -> Settings:
    """`qwen2.5` served by the slowed fake Ollama; the settings' own fallback names a model the
    remote fake does not serve, so an answer from `gpt-4o-mini` shows the agent's one won."""
    fake_ollama.models.append("qwen2.5:latest")
    fake_ollama.latency = LATENCY_S
    options = celery_app.conf.broker_transport_options  # the suite's key prefix
    return settings.replace(
        ollama_base_url=fake_ollama.url,
        openai_base_url=fake_openai.url,
        llm_gpu_models=("qwen2.5",),
        llm_remote_fallback="openai/not-served",
        extra={"broker_transport_options": {"global_keyprefix": options["global_keyprefix"]}},
        **limits,
    )


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _workflow(agent: str) -> dict[str, Any]:
    return {
        "name": f"wf-{uuid.uuid4().hex[:8]}",
        "version": 1,
        "steps": [{"id": "ask", "action": "invoke_agent", "with": {"agent": agent, "input": "hi"}}],
    }


def _chats(fake: Any) -> int:
    return sum(1 for path, _ in fake.requests if path in ("/api/chat", "/v1/chat/completions"))


def test_a_step_overflows_while_a_gpu_call_is_in_flight_and_stays_local_when_idle(
    settings: Settings, celery_app: Celery, fake_ollama: Any, fake_openai: Any, gpu_agent: str
) -> None:
    own = _overflowing(
        settings, celery_app, fake_ollama, fake_openai, llm_gpu_max_inflight=1, llm_gpu_max_queued=0
    )
    with swapped(own):
        first = start(_workflow(gpu_agent))
        _until(lambda: overflow.read_load(own).inflight == 1)  # the slow GPU call is running
        second = start(_workflow(gpu_agent))
        local_run, remote_run = wait_for(first), wait_for(second)
        fake_ollama.latency = 0
        idle_run = wait_for(start(_workflow(gpu_agent)))

    for run in (local_run, remote_run, idle_run):
        assert run.state == "succeeded", run.error
    local, remote, idle = (steps_of(run)["ask"] for run in (local_run, remote_run, idle_run))
    assert (local.queue, remote.queue, idle.queue) == ("llm.gpu", "llm", "llm.gpu")
    assert local.output["route"] == {"route": "local", "reason": "llm.gpu depth 0, in-flight 0"}
    assert remote.output["route"] == {"route": "remote", "reason": "llm.gpu in-flight 1 >= 1"}
    assert (remote.output["provider"], remote.output["model"]) == ("openai", "gpt-4o-mini")
    assert (local.output["provider"], idle.output["provider"]) == ("ollama", "ollama")
    assert idle.output["route"]["route"] == "local"
    assert _chats(fake_openai) == 1 and _chats(fake_ollama) == 2
    routed = [e for e in events_of(second) if e.kind == "step.routed"]
    assert [(e.step_id, e.message) for e in routed] == [("ask", "remote: llm.gpu in-flight 1 >= 1")]
    assert routed[0].data == {
        "route": "remote",
        "reason": "llm.gpu in-flight 1 >= 1",
        "model": "openai/gpt-4o-mini",
        "queue": "llm",
    }
    assert overflow.read_load(own) == overflow.GpuLoad(queued=0, inflight=0)


def test_chat_overflows_while_steps_wait_in_llm_gpu_and_stays_local_when_idle(
    settings: Settings,
    celery_app: Celery,
    fake_ollama: Any,
    fake_openai: Any,
    gpu_agent: str,
    make_api_key: MakeApiKey,
) -> None:
    own = _overflowing(settings, celery_app, fake_ollama, fake_openai, llm_gpu_max_queued=2)
    headers = make_api_key(["agents:read"])
    workflow = _workflow(gpu_agent)
    with swapped(own.replace(llm_gpu_max_queued=0)):  # the backlog itself never overflows
        backlog = [start(workflow) for _ in range(8)]  # twice what the worker's 4 threads take
    with chat_client(own, timeout=30) as client:
        _until(lambda: overflow.read_load(own) == overflow.GpuLoad(queued=4, inflight=4))
        busy = client.post(
            "/api/v1/chat", json={"message": "hi", "agent": gpu_agent}, headers=headers
        )
        for run_id in backlog:
            assert wait_for(run_id).state == "succeeded"
        fake_ollama.latency = 0
        idle = client.post(
            "/api/v1/chat", json={"message": "hi", "agent": gpu_agent}, headers=headers
        )

    assert busy.status_code == 200, busy.json
    assert busy.json["route"] == {"route": "remote", "reason": "llm.gpu depth 4 >= 2"}
    assert (busy.json["provider"], busy.json["model"]) == ("openai", "gpt-4o-mini")
    assert idle.status_code == 200, idle.json
    assert idle.json["route"] == {"route": "local", "reason": "llm.gpu depth 0, in-flight 0"}
    assert idle.json["provider"] == "ollama"
    assert _chats(fake_openai) == 1 and _chats(fake_ollama) == len(backlog) + 1

"""The GPU overflow decision without a broker: thresholds, key names, and what happens when the
load cannot be read (the call stays local)."""

from __future__ import annotations

import time

import pytest

from agent33.agents.routing import route_summary, routed_agent
from agent33.config import ConfigError, Settings, load_settings
from agent33.definitions.agents import parse_agent
from agent33.llm.overflow import GpuLoad, queue_keys, saturation
from agent33.llm.router import Route, gpu_slot, route_call

# A broker nobody listens on: connecting fails at once.
CLOSED = "redis://127.0.0.1:9/0"
GPU = Settings(
    ollama_default_model="llama3.2",
    llm_gpu_models=("qwen2.5",),
    redis_url=CLOSED,
    llm_gpu_max_queued=8,
    llm_gpu_max_inflight=2,
)


def test_kombu_keeps_a_queue_in_one_list_per_priority_step_behind_the_key_prefix() -> None:
    assert queue_keys(GPU) == ["llm.gpu"] + [f"llm.gpu\x06\x16{p}" for p in range(1, 10)]
    prefixed = GPU.replace(
        extra={"broker_transport_options": {"global_keyprefix": "p:", "priority_steps": [0, 5]}}
    )
    assert queue_keys(prefixed) == ["p:llm.gpu", "p:llm.gpu\x06\x165"]


def test_saturated_at_either_limit_and_a_zero_limit_is_off() -> None:
    assert saturation(GpuLoad(queued=7, inflight=1), GPU) is None
    assert saturation(GpuLoad(queued=12, inflight=0), GPU) == "llm.gpu depth 12 >= 8"
    assert saturation(GpuLoad(queued=0, inflight=2), GPU) == "llm.gpu in-flight 2 >= 2"
    off = GPU.replace(llm_gpu_max_queued=0, llm_gpu_max_inflight=0)
    assert saturation(GpuLoad(queued=10_000, inflight=10_000), off) is None


def test_calls_off_the_gpu_queue_or_without_a_remote_fallback_never_read_redis() -> None:
    started = time.monotonic()
    assert route_call(GPU, "openai/gpt-4o-mini", remote_fallback="openai/x") == Route(
        "llm", "openai/gpt-4o-mini", "local", "llm is not a GPU queue"
    )
    assert route_call(GPU, "qwen2.5", queue="llm", remote_fallback="openai/x").queue == "llm"
    assert route_call(GPU, "qwen2.5") == Route("llm.gpu", "qwen2.5", "local", "no remote fallback")
    assert time.monotonic() - started < 0.1


def test_redis_down_keeps_the_call_local_and_says_why() -> None:
    route = route_call(GPU, "qwen2.5", remote_fallback="openai/gpt-4o-mini")
    assert (route.queue, route.model, route.route) == ("llm.gpu", "qwen2.5", "local")
    assert route.reason.startswith("llm.gpu load unreadable (")


def test_a_broker_that_is_not_redis_keeps_the_call_local() -> None:
    amqp = GPU.replace(broker_url="amqp://guest@127.0.0.1:5672//")
    route = route_call(amqp, "qwen2.5", remote_fallback="openai/gpt-4o-mini")
    assert route.route == "local"
    assert "the broker is not Redis (amqp)" in route.reason
    with gpu_slot(amqp, "qwen2.5"):  # nothing to count in, and the call still runs
        pass


def test_the_setting_names_a_remote_fallback_for_agents_without_one() -> None:
    configured = GPU.replace(llm_remote_fallback="openai/gpt-4o-mini")
    # The load is read (and found unreadable here) only because a fallback is named.
    assert route_call(configured, "qwen2.5").reason.startswith("llm.gpu load unreadable")


def test_a_remote_route_swaps_the_model_and_keeps_the_other_fallbacks() -> None:
    agent = parse_agent(
        {
            "name": "a",
            "model": "qwen2.5",
            "fallbacks": ["openai/gpt-4o-mini", "ollama/mistral"],
            "remote_fallback": "openai/gpt-4o-mini",
        }
    )
    remote = Route("llm", "openai/gpt-4o-mini", "remote", "llm.gpu depth 9 >= 8").record()
    swapped = routed_agent(agent, remote)
    assert (swapped.model, swapped.fallbacks) == ("openai/gpt-4o-mini", ("ollama/mistral",))
    assert routed_agent(agent, None) is agent
    local = Route("llm.gpu", "qwen2.5", "local", "llm.gpu depth 0, in-flight 0").record()
    assert routed_agent(agent, local) is agent
    assert route_summary(remote) == {"route": "remote", "reason": "llm.gpu depth 9 >= 8"}
    assert route_summary(None) is None


def test_an_agent_document_may_name_a_remote_fallback() -> None:
    assert parse_agent({"name": "a", "model": "m"}).remote_fallback is None
    agent = parse_agent({"name": "a", "model": "m", "remote_fallback": "openai/gpt-4o-mini"})
    assert agent.remote_fallback == "openai/gpt-4o-mini"


def test_limits_are_read_from_the_environment_and_junk_names_the_variable() -> None:
    loaded = load_settings(
        {
            "AGENT33_LLM_REMOTE_FALLBACK": "openai/gpt-4o-mini",
            "AGENT33_LLM_GPU_MAX_QUEUED": "3",
            "AGENT33_LLM_GPU_MAX_INFLIGHT": "1",
        },
        dotenv_path=None,
    )
    assert (loaded.llm_remote_fallback, loaded.llm_gpu_max_queued) == ("openai/gpt-4o-mini", 3)
    assert loaded.llm_gpu_max_inflight == 1
    defaults = load_settings({}, dotenv_path=None)
    assert (defaults.llm_remote_fallback, defaults.llm_gpu_max_queued) == (None, 8)
    with pytest.raises(ConfigError, match="AGENT33_LLM_GPU_MAX_QUEUED must be an integer"):
        load_settings({"AGENT33_LLM_GPU_MAX_QUEUED": "lots"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="AGENT33_LLM_GPU_MAX_INFLIGHT must be between 0"):
        load_settings({"AGENT33_LLM_GPU_MAX_INFLIGHT": "-1"}, dotenv_path=None)

"""The GPU load as kombu and the workers leave it in a real Redis: waiting messages in every
priority list of `llm.gpu` behind the transport's key prefix, and leased in-flight calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from agent33.config import Settings
from agent33.llm import overflow
from agent33.llm.router import gpu_slot, route_call


@pytest.fixture
def gpu(settings: Settings) -> Iterator[Settings]:
    """GPU-tagged `qwen2.5`, overflow at 3 waiting or 2 running, keys under a prefix of its own."""
    prefix = f"gpu-load-{uuid.uuid4().hex[:8]}:"
    own = settings.replace(
        llm_gpu_models=("qwen2.5",),
        llm_remote_fallback="openai/gpt-4o-mini",
        llm_gpu_max_queued=3,
        llm_gpu_max_inflight=2,
        extra={"broker_transport_options": {"global_keyprefix": prefix}},
    )
    yield own
    client = redis.Redis.from_url(own.effective_broker_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def _queue(settings: Settings, *per_priority: int) -> None:
    """Messages waiting in `llm.gpu`, as many per priority list as given."""
    client = redis.Redis.from_url(settings.effective_broker_url)
    for key, count in zip(overflow.queue_keys(settings), per_priority, strict=False):
        for _ in range(count):
            client.lpush(key, "{}")
    client.close()


def test_an_idle_gpu_queue_keeps_the_call_local(gpu: Settings) -> None:
    route = route_call(gpu, "qwen2.5")
    assert (route.queue, route.model, route.route) == ("llm.gpu", "qwen2.5", "local")
    assert route.reason == "llm.gpu depth 0, in-flight 0"


def test_messages_in_every_priority_list_count_towards_the_depth(gpu: Settings) -> None:
    _queue(gpu, 1, 1)
    assert route_call(gpu, "qwen2.5").route == "local"
    _queue(gpu, 0, 0, 0, 1)  # another priority list: `llm.gpu\x06\x163`
    route = route_call(gpu, "qwen2.5")
    assert (route.queue, route.model, route.route) == ("llm", "openai/gpt-4o-mini", "remote")
    assert route.reason == "llm.gpu depth 3 >= 3"
    # Another prefix (another deployment, another test session) sees its own, empty queue.
    other = gpu.replace(extra={"broker_transport_options": {"global_keyprefix": "other:"}})
    assert route_call(other, "qwen2.5").route == "local"


def test_running_gpu_calls_are_counted_until_they_end(gpu: Settings) -> None:
    with gpu_slot(gpu, "ollama/qwen2.5:latest"), gpu_slot(gpu, "openai/gpt-4o-mini"):
        assert overflow.read_load(gpu).inflight == 1  # only the GPU-tagged model counts
        with gpu_slot(gpu, "qwen2.5"):
            route = route_call(gpu, "qwen2.5")
            assert (route.route, route.reason) == ("remote", "llm.gpu in-flight 2 >= 2")
    assert overflow.read_load(gpu) == overflow.GpuLoad(queued=0, inflight=0)


def test_the_lease_of_a_call_whose_worker_died_stops_counting(gpu: Settings) -> None:
    client = redis.Redis.from_url(gpu.effective_broker_url)
    key = overflow.inflight_key(gpu)
    client.zadd(key, {"killed-worker": time.time() - 1, "running": time.time() + 60})
    assert overflow.read_load(gpu).inflight == 1
    with gpu_slot(gpu, "qwen2.5"):  # a new lease sweeps the ended one away
        assert client.zscore(key, "killed-worker") is None
    client.close()


def test_redis_down_keeps_calls_local_and_running(gpu: Settings) -> None:
    down = gpu.replace(broker_url="redis://127.0.0.1:9/0")
    route = route_call(down, "qwen2.5")
    assert (route.queue, route.route) == ("llm.gpu", "local")
    assert "load unreadable" in route.reason
    ran = []
    with gpu_slot(down, "qwen2.5"):
        ran.append(True)
    assert ran == [True]

"""How busy the GPU queue is, read from the broker's Redis: messages waiting and calls running.

`llm.gpu` waits in the broker as Redis lists (kombu's Redis transport): one list per priority
step, `llm.gpu` for priority 0 and `llm.gpu<sep><step>` for the others, each behind the
transport's `global_keyprefix`. Running calls are counted in a sorted set, one member per call
scored with its lease's end, so a worker killed mid-call stops counting when its lease ends
instead of leaving a counter high for good (an INCR/DECR counter would). Reads and writes use
short timeouts: a slow or absent Redis must never hold a model call up (callers stay local).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from agent33.config import Settings
from agent33.config.parsers import ConfigError
from agent33.wire import PRIORITY_STEPS, Queue

log = structlog.get_logger(__name__)

INFLIGHT_KEY = "agent33:llm.gpu:inflight"
LEASE_S = 900.0  # a GPU call still running after this no longer counts as in flight
TIMEOUT_S = 0.25  # connect and read timeout of the load probe
KOMBU_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = PRIORITY_STEPS  # celeryconfig's priority_steps
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

# Expected failures of a load read or a lease write; callers stay local on any of them.
LoadError = (redis.RedisError, OSError, ConfigError)


@dataclass(frozen=True)
class GpuLoad:
    """`queued`: messages waiting in `llm.gpu`; `inflight`: GPU model calls running now."""

    queued: int
    inflight: int


def _transport(settings: Settings) -> Mapping[str, Any]:
    """The broker transport options a deployment set through AGENT33_CELERY_EXTRA."""
    options = settings.extra.get("broker_transport_options") or {}
    return options if isinstance(options, Mapping) else {}


def queue_keys(settings: Settings, queue: str = Queue.LLM_GPU.value) -> list[str]:
    """The Redis lists kombu keeps `queue`'s waiting messages in, one per priority step."""
    options = _transport(settings)
    prefix = str(options.get("global_keyprefix") or "")
    sep = str(options.get("sep") or KOMBU_SEP)
    steps: Sequence[int] = options.get("priority_steps") or KOMBU_PRIORITY_STEPS
    return [prefix + (f"{queue}{sep}{step}" if step else queue) for step in steps]


def inflight_key(settings: Settings) -> str:
    return str(_transport(settings).get("global_keyprefix") or "") + INFLIGHT_KEY


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(settings: Settings) -> redis.Redis:
    """A client of the broker's Redis with short timeouts (one pool per URL and process)."""
    url = settings.effective_broker_url
    if not url.startswith(REDIS_SCHEMES):
        raise ConfigError(f"the broker is not Redis ({url.partition(':')[0]})")
    with _clients_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(
                url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
            )
        return _clients[url]


def read_load(settings: Settings) -> GpuLoad:
    """`llm.gpu`'s waiting messages and running calls, in one round trip.

    Raises:
        redis.RedisError, OSError, ConfigError: the load could not be read (see LoadError).
    """
    key = inflight_key(settings)
    pipe = _client(settings).pipeline(transaction=False)
    for name in queue_keys(settings):
        pipe.llen(name)
    pipe.zcount(key, time.time(), "+inf")
    *lengths, running = pipe.execute()
    return GpuLoad(queued=sum(int(n) for n in lengths), inflight=int(running))


def saturation(load: GpuLoad, settings: Settings) -> str | None:
    """Why the GPU queue is too busy to wait on (None when it is not): a limit of 0 is off."""
    queue = Queue.LLM_GPU.value
    most_queued, most_running = settings.llm_gpu_max_queued, settings.llm_gpu_max_inflight
    if most_queued and load.queued >= most_queued:
        return f"{queue} depth {load.queued} >= {most_queued}"
    if most_running and load.inflight >= most_running:
        return f"{queue} in-flight {load.inflight} >= {most_running}"
    return None


def describe(load: GpuLoad) -> str:
    return f"{Queue.LLM_GPU.value} depth {load.queued}, in-flight {load.inflight}"


@contextmanager
def gpu_lease(settings: Settings) -> Iterator[None]:
    """Count one GPU model call as in flight for the block (its lease ends after LEASE_S).

    Redis failures are logged and ignored: the call runs whether or not it is counted."""
    key, member = inflight_key(settings), uuid.uuid4().hex
    counted = False
    try:
        client = _client(settings)
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {member: time.time() + LEASE_S})
        pipe.zremrangebyscore(key, "-inf", time.time())  # ended leases of killed workers
        pipe.execute()
        counted = True
    except ConfigError:
        pass  # not a Redis broker: nothing reads the count either
    except LoadError as exc:
        log.warning("llm.gpu_lease_failed", error=str(exc))
    try:
        yield
    finally:
        if counted:
            try:
                client.zrem(key, member)
            except LoadError as exc:
                log.warning("llm.gpu_lease_release_failed", error=str(exc))

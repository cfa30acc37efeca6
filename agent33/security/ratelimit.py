"""Token-bucket rate limits kept in Redis, so every gunicorn worker and host shares one budget.

Each bucket holds up to `burst` tokens and refills at `rate.per_second`; a request takes one
token or is refused with the seconds until one is back. The read-refill-take-write cycle runs
as one Lua script, so concurrent requests for the same bucket cannot both spend the last token,
and the clock is Redis's own (`TIME`), so web hosts with skewed clocks agree. Buckets expire
once they would be full again, so idle callers leave nothing behind.

Redis down: this module FAILS CLOSED. `hit` raises `RateLimitUnavailable` (HTTP 503, message
naming `redis`) rather than letting requests through unmetered or answering 500: a limiter that
silently disappears during an outage is exactly when abuse goes unnoticed, and 503 tells the
client to retry. `/health` is never rate limited, so operators still see what is down.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import redis

from agent33.config import RateSpec, Settings
from agent33.errors import Agent33Error, ServiceUnavailable

KEY_PREFIX = "agent33:ratelimit:"

# KEYS[1]: the bucket. ARGV: capacity, refill tokens/second, cost, now (seconds; "" = Redis TIME),
# peek ("1": report whether `cost` tokens are there without taking them, and create nothing).
# Returns {allowed (0/1), tokens left, seconds until `cost` tokens are back, first_denial (0/1)}.
# `first_denial` is 1 once per refusal window, so callers can log a flood as one event.
BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local peek = ARGV[5] == '1'
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'quiet_until')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local quiet_until = tonumber(state[3]) or 0
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
local first_denial = 0
if tokens >= cost then
  if peek then
    return {1, tostring(tokens), '0', 0}
  end
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
  if now >= quiet_until then
    first_denial = 1
    quiet_until = now + retry
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now),
  'quiet_until', tostring(quiet_until))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(retry), first_denial}
"""


class RateLimited(Agent33Error):
    """Over the limit: HTTP 429; `retry_after` is whole seconds for the Retry-After header."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitUnavailable(ServiceUnavailable):
    """Redis cannot be asked, so the request is refused (503) rather than let through unmetered."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"rate limiting needs redis, which is unavailable ({detail}); retry later",
            fields={"service": ["redis"]},
        )


@dataclass(frozen=True)
class Decision:
    """One bucket's answer: `retry_after` is fractional seconds (0 when allowed)."""

    allowed: bool
    remaining: float
    retry_after: float
    first_denial: bool

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up and at least 1, as the Retry-After header needs."""
        return max(1, math.ceil(self.retry_after - 1e-9))


class RateLimiter:
    """Token buckets named by caller (`key:<id>`, `sub:<user>`, `login:<ip>`) in one Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(BUCKET_LUA)

    def hit(
        self,
        bucket: str,
        rate: RateSpec,
        burst: int,
        *,
        cost: int = 1,
        now: float | None = None,
        peek: bool = False,
    ) -> Decision:
        """Take `cost` tokens from `bucket`; `now` overrides Redis's clock (tests only).

        `peek` only asks whether `cost` tokens are there (a refusal still counts towards
        `first_denial`): for budgets spent by failures, checked before the attempt.
        Raises RateLimitUnavailable when Redis does not answer.
        """
        args: list[str | int] = [
            burst,
            repr(rate.per_second),
            cost,
            "" if now is None else repr(now),
            "1" if peek else "0",
        ]
        try:
            allowed, remaining, retry, first = self._script(keys=[self.prefix + bucket], args=args)
        except redis.RedisError as error:
            raise RateLimitUnavailable(type(error).__name__) from error
        return Decision(
            allowed=bool(allowed),
            remaining=float(remaining),
            retry_after=float(retry),
            first_denial=bool(first),
        )

    def reset(self, bucket: str) -> None:
        """Forget a bucket (it starts full again)."""
        try:
            self.client.delete(self.prefix + bucket)
        except redis.RedisError as error:
            raise RateLimitUnavailable(type(error).__name__) from error


_lock = threading.Lock()
_limiters: dict[str, RateLimiter] = {}


def limiter_for(settings: Settings) -> RateLimiter:
    """One limiter (and connection pool) per process and Redis URL.

    Short socket timeouts: a hung Redis must turn into a quick 503, not a stuck web worker.
    """
    url = settings.redis_url
    if not url:
        raise RateLimitUnavailable("REDIS_URL is not set")
    with _lock:
        if url not in _limiters:
            client = redis.Redis.from_url(
                url, socket_timeout=1, socket_connect_timeout=1, health_check_interval=30
            )
            _limiters[url] = RateLimiter(client)
        return _limiters[url]

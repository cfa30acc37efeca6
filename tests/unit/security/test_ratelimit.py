"""Token-bucket math against a real Redis: burst, refusal, refill, expiry, atomicity, outage."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from agent33.config import ConfigError, RateSpec, Settings, load_settings
from agent33.security.ratelimit import Decision, RateLimiter, RateLimitUnavailable

pytestmark = pytest.mark.security


@pytest.fixture
def limiter(settings: Settings) -> Iterator[RateLimiter]:
    assert settings.redis_url
    client = redis.Redis.from_url(settings.redis_url)
    prefix = f"test:ratelimit:{uuid.uuid4().hex}:"
    yield RateLimiter(client, prefix=prefix)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def test_burst_is_allowed_then_refused_with_the_wait(limiter: RateLimiter) -> None:
    per_second = RateSpec(1, 1)
    allowed = [limiter.hit("b", per_second, 3, now=1000.0).allowed for _ in range(3)]
    assert allowed == [True, True, True]
    refused = limiter.hit("b", per_second, 3, now=1000.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
    assert refused.retry_after_seconds == 1
    assert refused.first_denial


def test_only_the_first_refusal_in_a_window_is_flagged(limiter: RateLimiter) -> None:
    rate = RateSpec(1, 10)  # one token per 10 s
    assert limiter.hit("b", rate, 1, now=0.0).allowed
    first = limiter.hit("b", rate, 1, now=0.0)
    again = limiter.hit("b", rate, 1, now=5.0)
    assert (first.first_denial, again.first_denial) == (True, False)
    assert again.retry_after == pytest.approx(5.0)
    later = limiter.hit("b", rate, 1, now=10.0)
    assert later.allowed


def test_tokens_refill_at_the_rate_and_cap_at_the_burst(limiter: RateLimiter) -> None:
    rate = RateSpec(2, 1)  # 2 tokens per second
    for _ in range(4):
        assert limiter.hit("b", rate, 4, now=50.0).allowed
    half = limiter.hit("b", rate, 4, now=50.25)  # 0.5 token back: not enough
    assert not half.allowed
    assert half.retry_after == pytest.approx(0.25)
    assert limiter.hit("b", rate, 4, now=50.5).allowed  # one whole token back
    idle = limiter.hit("b", rate, 4, now=10_000.0)  # long idle: full, never above the burst
    assert idle.allowed
    assert idle.remaining == pytest.approx(3.0)


def test_refill_over_real_time_with_a_small_rate(limiter: RateLimiter) -> None:
    rate = RateSpec(20, 1)  # a token every 50 ms, on Redis's own clock
    assert limiter.hit("b", rate, 1).allowed
    refused = limiter.hit("b", rate, 1)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.05
    time.sleep(0.08)
    assert limiter.hit("b", rate, 1).allowed


def test_buckets_are_independent(limiter: RateLimiter) -> None:
    rate = RateSpec(1, 60)
    assert limiter.hit("a", rate, 1, now=1.0).allowed
    assert not limiter.hit("a", rate, 1, now=1.0).allowed
    assert limiter.hit("other", rate, 1, now=1.0).allowed


def test_buckets_expire_once_they_would_be_full(limiter: RateLimiter) -> None:
    limiter.hit("b", RateSpec(10, 1), 5)  # refills 1 token in 0.1 s
    ttl_ms = int(limiter.client.pttl(limiter.prefix + "b"))
    assert 0 < ttl_ms <= 1100
    limiter.reset("b")
    assert limiter.client.exists(limiter.prefix + "b") == 0


def test_concurrent_hits_never_overspend(limiter: RateLimiter) -> None:
    rate, burst, results = RateSpec(1, 3600), 10, []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            decision = limiter.hit("shared", rate, burst)
            with lock:
                results.append(decision.allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40
    assert results.count(True) == burst


def test_redis_down_raises_an_error_naming_redis() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, socket_timeout=1)
    with pytest.raises(RateLimitUnavailable) as caught:
        RateLimiter(dead).hit("b", RateSpec(1, 1), 1)
    assert caught.value.http_status == 503
    assert "redis" in caught.value.message


@pytest.mark.parametrize(("retry", "seconds"), [(0.001, 1), (1.0, 1), (1.2, 2), (59.9, 60)])
def test_retry_after_rounds_up_to_whole_seconds(retry: float, seconds: int) -> None:
    assert Decision(False, 0.0, retry, False).retry_after_seconds == seconds


def test_rate_settings_parse_and_name_the_variable_on_junk() -> None:
    defaults = load_settings({}, dotenv_path=None)
    assert (defaults.rate_limit, defaults.rate_burst) == (RateSpec(120, 60), 60)
    assert defaults.login_rate_limit == RateSpec(10, 60)
    custom = load_settings(
        {"AGENT33_RATE_LIMIT": "5/second", "AGENT33_LOGIN_RATE_LIMIT": "0"}, dotenv_path=None
    )
    assert custom.rate_limit == RateSpec(5, 1)
    assert custom.login_rate_limit is None
    assert str(RateSpec(3, 3600)) == "3/hour"
    for name, junk in [
        ("AGENT33_RATE_LIMIT", "lots"),
        ("AGENT33_RATE_LIMIT", "5/fortnight"),
        ("AGENT33_LOGIN_RATE_LIMIT", "-1/minute"),
        ("AGENT33_RATE_BURST", "0"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load_settings({name: junk}, dotenv_path=None)


def test_peek_reports_the_budget_without_spending_or_creating_it(limiter: RateLimiter) -> None:
    rate = RateSpec(1, 10)
    assert limiter.hit("p", rate, 2, now=0.0, peek=True).allowed
    assert limiter.client.exists(limiter.prefix + "p") == 0  # asking leaves nothing behind
    assert [limiter.hit("p", rate, 2, now=0.0).allowed for _ in range(2)] == [True, True]
    peeked = [limiter.hit("p", rate, 2, now=1.0, peek=True) for _ in range(2)]
    assert [d.allowed for d in peeked] == [False, False]
    assert [d.first_denial for d in peeked] == [True, False]
    assert limiter.hit("p", rate, 2, now=10.0, peek=True).allowed  # refilled, still unspent
    assert limiter.hit("p", rate, 2, now=10.0).allowed
    assert not limiter.hit("p", rate, 2, now=10.0, peek=True).allowed

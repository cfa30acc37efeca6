"""Retry delays and the signature of outbound webhooks (pure functions, no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest
from standardwebhooks import Webhook as Signer

from agent33.automation.delivery import MAX_DELAY, backoff
from agent33.automation.webhooks_out import check_events, new_secret
from agent33.errors import ValidationFailed
from agent33.security.signatures import secret_key

pytestmark = pytest.mark.automation


@pytest.mark.parametrize("attempts", [1, 2, 3, 6])
def test_backoff_doubles_with_jitter_in_the_upper_half(attempts: int) -> None:
    full = 2.0 * 2 ** (attempts - 1)
    delays = {backoff(attempts, 2.0) for _ in range(200)}
    assert all(full / 2 <= delay <= full for delay in delays)
    assert len(delays) > 100  # jittered, not a fixed schedule


def test_backoff_is_capped_and_honours_retry_after() -> None:
    assert backoff(40, 5.0) <= MAX_DELAY
    assert backoff(1, 0.1, retry_after=30.0) == 30.0
    assert backoff(1, 0.1, retry_after=10 * MAX_DELAY) == MAX_DELAY


def test_the_library_signs_the_reference_vector() -> None:
    """The Standard Webhooks reference vector (shared/PLATFORM-APIS.md section 8)."""
    signer = Signer("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    moment = dt.datetime.fromtimestamp(1614265330, dt.UTC)
    signature = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", moment, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(secret_key(first)) == 32


def test_unknown_or_no_event_types_name_the_field() -> None:
    assert check_events(["run.failed", "run.failed", "step.failed"]) == [
        "run.failed",
        "step.failed",
    ]
    for bad in (["run.exploded"], []):
        with pytest.raises(ValidationFailed) as caught:
            check_events(bad)
        assert "events" in caught.value.fields

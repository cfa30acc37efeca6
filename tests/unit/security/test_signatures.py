"""Webhook signatures: HMAC over timestamp + raw body, a replay window, constant-time compare."""

from __future__ import annotations

import time

import pytest

from agent33.security.signatures import BadSignature, parse, sign, verify

pytestmark = pytest.mark.security
SECRET = "whsec_test"
BODY = b'{"name": "ada"}'


def test_a_fresh_signature_verifies() -> None:
    header = sign(SECRET, BODY)
    assert verify(secret=SECRET, body=BODY, header=header).timestamp <= time.time()


@pytest.mark.parametrize(
    "header",
    [None, "", "v1=abc", "t=notanumber,v1=abc", "t=123"],
)
def test_missing_or_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(BadSignature):
        verify(secret=SECRET, body=BODY, header=header)


def test_a_changed_body_or_wrong_secret_is_refused() -> None:
    header = sign(SECRET, BODY)
    with pytest.raises(BadSignature, match="does not match"):
        verify(secret=SECRET, body=BODY + b" ", header=header)
    with pytest.raises(BadSignature, match="does not match"):
        verify(secret="other", body=BODY, header=header)


def test_stale_and_future_timestamps_are_refused() -> None:
    old = sign(SECRET, BODY, timestamp=int(time.time()) - 301)
    with pytest.raises(BadSignature, match="window"):
        verify(secret=SECRET, body=BODY, header=old)
    future = sign(SECRET, BODY, timestamp=int(time.time()) + 301)
    with pytest.raises(BadSignature, match="window"):
        verify(secret=SECRET, body=BODY, header=future)


def test_rotation_accepts_any_listed_signature() -> None:
    ts = int(time.time())
    new = sign("new-secret", BODY, timestamp=ts).split(",")[1]
    old = sign(SECRET, BODY, timestamp=ts).split(",")[1]
    header = f"t={ts},{new},{old}"
    assert len(parse(header).signatures) == 2
    verify(secret=SECRET, body=BODY, header=header)
    verify(secret="new-secret", body=BODY, header=header)

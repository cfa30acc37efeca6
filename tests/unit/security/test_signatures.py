"""Standard Webhooks signatures: id, timestamp and body signed; strict headers; replay nonces."""

from __future__ import annotations

import time

import pytest

from agent33.security.signatures import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    parse,
    secret_key,
    sign,
    verify,
)

pytestmark = pytest.mark.security
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"name": "ada"}'


def _lists(headers: dict[str, str]) -> dict[str, list[str]]:
    return {name: [value] for name, value in headers.items()}


def _signed(body: bytes = BODY, **changes: str) -> dict[str, list[str]]:
    headers = sign(SECRET, "msg_1", body)
    headers.update(changes)
    return _lists(headers)


def test_the_reference_test_vector_verifies() -> None:
    """From the Standard Webhooks reference library's test suite (PLATFORM-APIS.md section 8)."""
    headers = {
        ID_HEADER: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        TIMESTAMP_HEADER: "1614265330",
        SIGNATURE_HEADER: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    verified = verify(secret=SECRET, body=body, headers=_lists(headers), now=1614265330 + 10)
    assert verified.webhook_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    ours = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", body, timestamp=1614265330)
    assert ours == headers


def test_secrets_decode_with_or_without_prefix_and_padding() -> None:
    key = secret_key(SECRET)
    assert len(key) == 24
    assert secret_key(SECRET.removeprefix("whsec_")) == key
    assert secret_key("whsec_not base64!") == b"whsec_not base64!"


def test_a_fresh_signature_verifies() -> None:
    assert verify(secret=SECRET, body=BODY, headers=_signed()).timestamp <= time.time()


@pytest.mark.parametrize(
    "changes",
    [
        {ID_HEADER: "msg_2"},  # the id is signed: another id is another message
        {ID_HEADER: "MSG_1"},
        {TIMESTAMP_HEADER: "one second earlier"},  # computed when the test runs, not collected
    ],
)
def test_the_id_and_timestamp_are_covered(changes: dict[str, str]) -> None:
    headers = _signed()
    if changes.get(TIMESTAMP_HEADER):
        changes = {TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER][0]) - 1)}
    headers.update(_lists(changes))
    with pytest.raises(BadSignature, match="does not match"):
        verify(secret=SECRET, body=BODY, headers=headers)


def test_a_changed_body_or_wrong_secret_is_refused() -> None:
    with pytest.raises(BadSignature, match="does not match"):
        verify(secret=SECRET, body=BODY + b" ", headers=_signed())
    with pytest.raises(BadSignature, match="does not match"):
        verify(secret="whsec_" + "A" * 32, body=BODY, headers=_signed())


def test_stale_and_future_timestamps_are_refused() -> None:
    for offset in (-301, 301):
        headers = _lists(sign(SECRET, "msg_1", BODY, timestamp=int(time.time()) + offset))
        with pytest.raises(BadSignature, match="window"):
            verify(secret=SECRET, body=BODY, headers=headers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (TIMESTAMP_HEADER, "9" * 400),  # once an OverflowError (500) in float arithmetic
        (TIMESTAMP_HEADER, "9" * 13),
        (TIMESTAMP_HEADER, "-1"),
        (TIMESTAMP_HEADER, "+{now}"),
        (TIMESTAMP_HEADER, "0{now}"),
        (TIMESTAMP_HEADER, "{now}.0"),
        (TIMESTAMP_HEADER, "１２３"),  # fullwidth digits: str.isdigit() says yes
        (TIMESTAMP_HEADER, "²"),
        (TIMESTAMP_HEADER, ""),
        (TIMESTAMP_HEADER, "{now}, {now}"),  # two headers, joined by the server
        (ID_HEADER, ""),
        (ID_HEADER, "msg.1"),
        (ID_HEADER, "msg_1, msg_2"),
        (ID_HEADER, "x" * 151),
        (SIGNATURE_HEADER, ""),
        (SIGNATURE_HEADER, "v1="),
        (SIGNATURE_HEADER, "v1,"),
        (SIGNATURE_HEADER, "v2,abc"),  # only unknown versions: nothing to check
        (SIGNATURE_HEADER, "v1,@@@@"),
        (SIGNATURE_HEADER, "v1,AAAA"),  # not 32 bytes
        (SIGNATURE_HEADER, "t=1,v1=abcdef"),  # the old X-Agent33-Signature format
        (SIGNATURE_HEADER, " ".join(["v1,AAAA"] * 9)),
    ],
)
def test_malformed_headers_are_refused(name: str, value: str) -> None:
    """Refused for their form, not for a stale time (`{now}` is filled in when the test runs)."""
    value = value.replace("{now}", str(int(time.time())))
    with pytest.raises(BadSignature) as refused:
        verify(secret=SECRET, body=BODY, headers=_signed(**{name: value}))
    assert "window" not in str(refused.value)


def test_missing_and_repeated_headers_are_refused() -> None:
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        headers = _signed()
        del headers[name]
        with pytest.raises(BadSignature, match=f"missing {name}"):
            parse(headers)
        repeated = _signed()
        repeated[name] = repeated[name] * 2
        with pytest.raises(BadSignature, match="exactly one"):
            parse(repeated)


def test_whitespace_around_a_signature_is_malformed_not_a_new_signature() -> None:
    value = _signed()[SIGNATURE_HEADER][0]
    for variant in (f"{value}  ", f"  {value}", value.replace(",", ", "), f"{value}  {value}"):
        with pytest.raises(BadSignature, match="malformed"):
            verify(secret=SECRET, body=BODY, headers=_signed(**{SIGNATURE_HEADER: variant}))


def test_rotation_accepts_any_listed_signature_and_skips_unknown_versions() -> None:
    ts = int(time.time())
    new_secret = "whsec_" + "B" * 32
    new = sign(new_secret, "msg_1", BODY, timestamp=ts)[SIGNATURE_HEADER]
    old = sign(SECRET, "msg_1", BODY, timestamp=ts)[SIGNATURE_HEADER]
    headers = _signed(**{TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"v1a,xyz= {new} {old}"})
    assert len(parse(headers).signatures) == 2
    first = verify(secret=SECRET, body=BODY, headers=headers)
    second = verify(secret=new_secret, body=BODY, headers=headers)
    assert first.nonce != second.nonce  # the nonce is the MAC we computed, per secret


def test_the_nonce_names_the_content_not_the_header_text() -> None:
    ts = int(time.time())
    headers = _signed(**{TIMESTAMP_HEADER: str(ts)})
    value = headers[SIGNATURE_HEADER][0]
    doubled = _signed(**{TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"{value} {value}"})
    assert (
        verify(secret=SECRET, body=BODY, headers=headers).nonce
        == verify(secret=SECRET, body=BODY, headers=doubled).nonce
    )

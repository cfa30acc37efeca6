"""The platforms' signature checks against the vectors in shared/PLATFORM-APIS.md §8, and
the message splitting each platform's length limit needs."""

from __future__ import annotations

import pytest

from agent33.channels import slack, whatsapp
from agent33.channels.discord import Discord
from agent33.channels.protocol import BadSignature, ChannelConfig, WebhookRequest, split
from agent33.channels.telegram import Telegram

pytestmark = pytest.mark.messaging

SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
    b"d2c447fce8b6703c"
)
DISCORD_PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
DISCORD_SIGNATURE = (
    "c1098e97d711377f30225d53d94b89d43537f92e5b3afaddc590781b1f9f9d4b"
    "2eeab335d370be3b9a090bc61a85b86448bc140dcd195f1569c2bff181257607"
)


def _config(**secrets: str) -> ChannelConfig:
    return ChannelConfig(
        name="t", api_url="", options={"public_key": DISCORD_PUBLIC}, secrets=secrets
    )


def _request(body: bytes, **headers: str) -> WebhookRequest:
    return WebhookRequest(method="POST", headers=headers, query={}, body=body)


def test_slack_v0_vector() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack.signature(secret, "1531420618", SLACK_BODY) == expected
    headers = {"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": expected}
    slack.Slack().verify(_request(SLACK_BODY, **headers), _config(signing=secret), 1531420700.0)
    with pytest.raises(BadSignature):  # the same signature six minutes later: stale
        slack.Slack().verify(_request(SLACK_BODY, **headers), _config(signing=secret), 1531420979.0)


def test_discord_ed25519_vector() -> None:
    headers = {"X-Signature-Ed25519": DISCORD_SIGNATURE, "X-Signature-Timestamp": "1700000000"}
    Discord().verify(_request(b'{"type":1}', **headers), _config(), 1700000010.0)
    with pytest.raises(BadSignature):
        Discord().verify(_request(b'{"type":2}', **headers), _config(), 1700000010.0)
    with pytest.raises(BadSignature):
        Discord().verify(
            _request(b'{"type":1}', **{**headers, "X-Signature-Ed25519": "zz"}),
            _config(),
            1700000010.0,
        )


def test_whatsapp_vector() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = "sha256=c84a394cc475525991e78ff16e430b02e47f953877d2af0ade26956ce6f384dc"
    assert whatsapp.signature("test-app-secret", body) == expected
    whatsapp.WhatsApp().verify(
        _request(body, **{"X-Hub-Signature-256": expected}),
        _config(app_secret="test-app-secret"),
        0,
    )


def test_telegram_secret_token_is_exact() -> None:
    config = _config(webhook="abc_DEF-123")
    Telegram().verify(
        _request(b"{}", **{"X-Telegram-Bot-Api-Secret-Token": "abc_DEF-123"}), config, 0
    )
    for wrong in ("abc_DEF-12", "abc_DEF-1234", ""):
        with pytest.raises(BadSignature):
            Telegram().verify(
                _request(b"{}", **{"X-Telegram-Bot-Api-Secret-Token": wrong}), config, 0
            )


def test_split_keeps_words_and_limits() -> None:
    text = " ".join(f"w{i:04d}" for i in range(3000))
    chunks = split(text, 4096)
    assert all(len(c) <= 4096 for c in chunks) and " ".join(chunks) == text
    assert split("x" * 5000, 2000) == ["x" * 2000, "x" * 2000, "x" * 1000]
    assert split("para one\n\npara two", 12) == ["para one", "para two"]
    assert split("   ", 100) == ["(no answer)"]

"""Slack Events API: signing secret v0 over `v0:<timestamp>:<raw body>` with a 5-minute
window, the `url_verification` challenge, and `chat.postMessage` in the message's thread.

Answered: `app_mention` anywhere, `message` in a direct message (`channel_type: im`).
Secrets: `token` (the bot token, `xoxb-...`) and `signing` (the app's Signing Secret). Slack
retries a delivery with the same body; a mention in a channel can also arrive as both
`app_mention` and `message` with different event ids, so the dedupe key is `(channel, ts)`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from agent33.channels.protocol import (
    BadSignature,
    ChannelConfig,
    Inbound,
    Outgoing,
    Received,
    Sent,
    WebhookRequest,
    call,
    json_of,
    retry_after_header,
    same,
)

WINDOW_S = 300
MENTION = re.compile(r"<@[A-Z0-9]+>\s*")
RETRYABLE = frozenset(("ratelimited", "rate_limited", "internal_error", "fatal_error"))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Slack:
    kind = "slack"
    default_api_url = "https://slack.com/api"
    limit = 40000
    pace = 1.0  # chat.postMessage: about one a second per channel
    secret_roles: tuple[str, ...] = ("token", "signing")
    option_names: tuple[str, ...] = ()

    def handshake(self, request: WebhookRequest, config: ChannelConfig) -> Received | None:
        return None

    def verify(self, request: WebhookRequest, config: ChannelConfig, now: float) -> None:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        try:
            stale = abs(now - int(timestamp)) > WINDOW_S
        except ValueError:
            stale = True
        if stale:
            raise BadSignature(
                "X-Slack-Request-Timestamp is missing or outside the 5-minute window",
                fields={"X-Slack-Request-Timestamp": ["stale"]},
            )
        expected = signature(config.secrets["signing"], timestamp, request.body)
        if not same(request.headers.get("X-Slack-Signature"), expected):
            raise BadSignature(
                "X-Slack-Signature does not match", fields={"X-Slack-Signature": ["invalid"]}
            )

    def parse(self, request: WebhookRequest, config: ChannelConfig) -> Received:
        payload: dict[str, Any] = json.loads(request.body)
        if payload.get("type") == "url_verification":
            return Received(body={"challenge": payload.get("challenge", "")})
        event = payload.get("event")
        if payload.get("type") != "event_callback" or not isinstance(event, dict):
            return Received(body={})
        if event.get("type") not in ("app_mention", "message"):
            return Received(body={})
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return Received(body={})  # our own posts and edits: never answer ourselves
        if event["type"] == "message" and event.get("channel_type") != "im":
            return Received(body={})  # in channels only a mention is for us
        ts = str(event["ts"])
        inbound = Inbound(
            event_id=f"{event['channel']}:{ts}",
            sender=str(event["user"]),
            conversation=str(event["channel"]),
            text=MENTION.sub("", str(event.get("text", ""))).strip(),
            reply_to=str(event.get("thread_ts") or ts),
            extra={"event_id": payload.get("event_id")},
        )
        return Received(messages=[inbound], body={})

    def send(self, config: ChannelConfig, out: Outgoing) -> Sent:
        body: dict[str, Any] = {"channel": out.conversation, "text": out.text}
        if out.reply_to is not None:
            body["thread_ts"] = out.reply_to
        headers = {
            "Authorization": f"Bearer {config.secrets['token']}",
            "Content-Type": "application/json; charset=utf-8",
        }
        response = call("POST", f"{config.api_url}/chat.postMessage", body, headers)
        if isinstance(response, Sent):
            return response
        reply = json_of(response)
        if response.status_code == 200 and reply.get("ok"):
            return Sent(ok=True, ref=str(reply.get("ts")))
        error = str(reply.get("error") or response.reason)
        return Sent(
            ok=False,
            error=f"HTTP {response.status_code}: {error}"[:500],
            retryable=response.status_code == 429
            or response.status_code >= 500
            or error in RETRYABLE,
            retry_after=retry_after_header(response),
        )

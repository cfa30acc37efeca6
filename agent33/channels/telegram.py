"""Telegram Bot API: `setWebhook` with a `secret_token`, echoed in
`X-Telegram-Bot-Api-Secret-Token` on every update; answers go out with `sendMessage`.

Secrets: `token` (the bot token from @BotFather) and `webhook` (the secret_token, 1-256 of
`A-Z a-z 0-9 _ -`). The update's `update_id` is the dedupe key.
"""

from __future__ import annotations

import json
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
    same,
)

HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Telegram:
    kind = "telegram"
    default_api_url = "https://api.telegram.org"
    limit = 4096
    pace = 1.0  # about one message a second per chat
    secret_roles: tuple[str, ...] = ("token", "webhook")
    option_names: tuple[str, ...] = ()

    def handshake(self, request: WebhookRequest, config: ChannelConfig) -> Received | None:
        return None

    def verify(self, request: WebhookRequest, config: ChannelConfig, now: float) -> None:
        if not same(request.headers.get(HEADER), config.secrets["webhook"]):
            raise BadSignature(f"{HEADER} is missing or wrong", fields={HEADER: ["invalid"]})

    def parse(self, request: WebhookRequest, config: ChannelConfig) -> Received:
        update: dict[str, Any] = json.loads(request.body)
        message = update.get("message") or update.get("edited_message")
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            return Received()  # other update kinds are acknowledged and ignored
        sender = message.get("from") or message["chat"]
        inbound = Inbound(
            event_id=str(update["update_id"]),
            sender=str(sender["id"]),
            conversation=str(message["chat"]["id"]),
            text=message["text"],
            reply_to=str(message["message_id"]),
        )
        return Received(messages=[inbound], body={})

    def send(self, config: ChannelConfig, out: Outgoing) -> Sent:
        body: dict[str, Any] = {"chat_id": int(out.conversation), "text": out.text}
        if out.reply_to is not None and out.index == 0:
            body["reply_parameters"] = {
                "message_id": int(out.reply_to),
                "allow_sending_without_reply": True,
            }
        url = f"{config.api_url}/bot{config.secrets['token']}/sendMessage"
        response = call("POST", url, body)
        if isinstance(response, Sent):
            return response
        reply = json_of(response)
        if response.ok and reply.get("ok"):
            return Sent(ok=True, ref=str(reply["result"]["message_id"]))
        status = response.status_code
        retry_after = (reply.get("parameters") or {}).get("retry_after")
        return Sent(
            ok=False,
            error=f"HTTP {status}: {reply.get('description', response.reason)}"[:500],
            retryable=status == 429 or status >= 500,
            retry_after=float(retry_after) if retry_after is not None else None,
        )


def set_webhook(config: ChannelConfig, url: str) -> dict[str, Any]:
    """Point the bot's webhook at `url` with our secret token (used by `channels add`)."""
    body = {"url": url, "secret_token": config.secrets["webhook"]}
    response = call("POST", f"{config.api_url}/bot{config.secrets['token']}/setWebhook", body)
    if isinstance(response, Sent):
        return {"ok": False, "description": response.error}
    return json_of(response)

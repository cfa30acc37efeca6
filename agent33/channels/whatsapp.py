"""WhatsApp Cloud API: the `hub.challenge` GET handshake with our verify token,
`X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the App Secret), and
`POST /{phone-number-id}/messages` to reply.

Secrets: `token` (the access token), `app_secret` and `verify` (the verify token typed into
the App Dashboard). Option `phone_number_id` is the sending number when a message does not
name one. Meta batches entries, changes and messages: all are read; status updates are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
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
    retry_after_header,
    same,
)

HEADER = "X-Hub-Signature-256"
RETRYABLE_CODES = frozenset((4, 80007, 130429, 131056, 131000, 2))


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WhatsApp:
    kind = "whatsapp"
    default_api_url = "https://graph.facebook.com/v21.0"
    limit = 4096
    pace = 0.0  # the pair rate limit comes back as error 131056
    secret_roles: tuple[str, ...] = ("token", "app_secret", "verify")
    option_names: tuple[str, ...] = ("phone_number_id",)

    def handshake(self, request: WebhookRequest, config: ChannelConfig) -> Received | None:
        if request.query.get("hub.mode") == "subscribe" and same(
            request.query.get("hub.verify_token"), config.secrets["verify"]
        ):
            return Received(body=request.query.get("hub.challenge", ""), content_type="text/plain")
        raise BadSignature(
            "hub.verify_token does not match", fields={"hub.verify_token": ["invalid"]}
        )

    def verify(self, request: WebhookRequest, config: ChannelConfig, now: float) -> None:
        expected = signature(config.secrets["app_secret"], request.body)
        if not same(request.headers.get(HEADER), expected):
            raise BadSignature(f"{HEADER} does not match", fields={HEADER: ["invalid"]})

    def parse(self, request: WebhookRequest, config: ChannelConfig) -> Received:
        payload: dict[str, Any] = json.loads(request.body)
        messages: list[Inbound] = []
        for entry in payload.get("entry") or []:
            for change in entry.get("changes") or []:
                value = change.get("value") or {}
                number = (value.get("metadata") or {}).get("phone_number_id")
                for message in value.get("messages") or []:
                    if message.get("type") != "text":
                        continue
                    messages.append(
                        Inbound(
                            event_id=str(message["id"]),
                            sender=str(message["from"]),
                            conversation=str(message["from"]),
                            text=str((message.get("text") or {}).get("body", "")),
                            reply_to=str(message["id"]),
                            extra={"phone_number_id": number} if number else {},
                        )
                    )
        return Received(messages=messages, body={})

    def send(self, config: ChannelConfig, out: Outgoing) -> Sent:
        number = out.extra.get("phone_number_id") or config.options.get("phone_number_id")
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": out.conversation,
            "type": "text",
            "text": {"body": out.text, "preview_url": False},
        }
        if out.reply_to is not None and out.index == 0:
            body["context"] = {"message_id": out.reply_to}
        headers = {"Authorization": f"Bearer {config.secrets['token']}"}
        response = call("POST", f"{config.api_url}/{number}/messages", body, headers)
        if isinstance(response, Sent):
            return response
        reply = json_of(response)
        if response.ok and reply.get("messages"):
            return Sent(ok=True, ref=str(reply["messages"][0].get("id")))
        error = reply.get("error") or {}
        code = error.get("code")
        return Sent(
            ok=False,
            error=f"HTTP {response.status_code}: {error.get('message', response.reason)}"
            f" (code {code})"[:500],
            retryable=code in RETRYABLE_CODES
            or response.status_code == 429
            or response.status_code >= 500,
            retry_after=retry_after_header(response),
        )

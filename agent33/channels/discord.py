"""Discord interactions over HTTP: Ed25519 over `timestamp + raw body` with the application's
public key, PING answered with PONG, a command acknowledged at once with a deferred response
(type 5) and answered later by editing `@original`, then follow-up messages.

Options: `public_key` (hex, from the developer portal) and `application_id`. No secret is
needed to answer: the interaction token in the follow-up URL authenticates (valid 15 minutes).
Discord documents no timestamp window; we refuse timestamps more than 5 minutes off, on top
of the interaction-id dedupe.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
)

WINDOW_S = 300
PING, APPLICATION_COMMAND, AUTOCOMPLETE = 1, 2, 4
PONG, DEFERRED, DEFERRED_UPDATE, AUTOCOMPLETE_RESULT = 1, 5, 6, 8
STRING_OPTION = 3


def _verified(public_key: str, signature: str, message: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), message)
    except (ValueError, InvalidSignature):
        return False
    return True


def _text(data: dict[str, Any]) -> str:
    options = data.get("options") or []
    values = [str(o.get("value", "")) for o in options if o.get("type") == STRING_OPTION]
    return " ".join(v for v in values if v).strip()


class Discord:
    kind = "discord"
    default_api_url = "https://discord.com/api/v10"
    limit = 2000
    pace = 0.0  # per-route limits come back as 429 with retry_after
    secret_roles: tuple[str, ...] = ()
    option_names: tuple[str, ...] = ("public_key", "application_id")

    def handshake(self, request: WebhookRequest, config: ChannelConfig) -> Received | None:
        return None

    def verify(self, request: WebhookRequest, config: ChannelConfig, now: float) -> None:
        timestamp = request.headers.get("X-Signature-Timestamp", "")
        signature = request.headers.get("X-Signature-Ed25519", "")
        message = timestamp.encode() + request.body
        if not _verified(str(config.options["public_key"]), signature, message):
            raise BadSignature(
                "X-Signature-Ed25519 does not verify", fields={"X-Signature-Ed25519": ["invalid"]}
            )
        try:
            stale = abs(now - int(timestamp)) > WINDOW_S
        except ValueError:
            stale = True
        if stale:
            raise BadSignature(
                "X-Signature-Timestamp is outside the 5-minute window",
                fields={"X-Signature-Timestamp": ["stale"]},
            )

    def parse(self, request: WebhookRequest, config: ChannelConfig) -> Received:
        interaction: dict[str, Any] = json.loads(request.body)
        kind = interaction.get("type")
        if kind == PING:
            return Received(body={"type": PONG})
        if kind == AUTOCOMPLETE:
            return Received(body={"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}})
        if kind != APPLICATION_COMMAND:  # components and modals: acknowledged, not answered
            return Received(body={"type": DEFERRED_UPDATE})
        user = (interaction.get("member") or {}).get("user") or interaction.get("user") or {}
        inbound = Inbound(
            event_id=str(interaction["id"]),
            sender=str(user.get("id", "")),
            conversation=str(interaction.get("channel_id", "")),
            text=_text(interaction.get("data") or {}),
            extra={
                "token": interaction["token"],
                "application_id": str(interaction.get("application_id")),
            },
        )
        return Received(messages=[inbound], body={"type": DEFERRED})

    def send(self, config: ChannelConfig, out: Outgoing) -> Sent:
        base = f"{config.api_url}/webhooks/{out.extra['application_id']}/{out.extra['token']}"
        body = {"content": out.text, "allowed_mentions": {"parse": []}}
        if out.index == 0:
            response = call("PATCH", f"{base}/messages/@original", body)
        else:
            response = call("POST", base, body)
        if isinstance(response, Sent):
            return response
        reply = json_of(response)
        if response.ok:
            return Sent(ok=True, ref=str(reply.get("id", "")))
        retry_after = reply.get("retry_after")
        return Sent(
            ok=False,
            error=f"HTTP {response.status_code}: {reply.get('message', response.reason)}"[:500],
            retryable=response.status_code == 429 or response.status_code >= 500,
            retry_after=float(retry_after)
            if retry_after is not None
            else retry_after_header(response),
        )

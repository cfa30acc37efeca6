"""Drivers that play the platform's side of a webhook: the exact bodies and signatures each
platform sends (shared/PLATFORM-APIS.md), and readers for what the system recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from agent33.db import session_scope
from agent33.db.models import ChannelInbound

DISCORD_SEED = bytes(range(32))
DISCORD_KEY = Ed25519PrivateKey.from_private_bytes(DISCORD_SEED)
DISCORD_PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"


def telegram_update(update_id: int, text: str, chat_id: int = 555000111) -> bytes:
    update = {
        "update_id": update_id,
        "message": {
            "message_id": 42,
            "date": 1760000000,
            "chat": {"id": chat_id, "type": "private", "first_name": "Ada"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ada", "username": "ada_l"},
            "text": text,
        },
    }
    return json.dumps(update).encode()


def slack_event(
    event_id: str, text: str, ts: str = "1760000000.000100", kind: str = "app_mention"
) -> bytes:
    envelope = {
        "token": "legacy-verification-token",
        "team_id": "T0001",
        "api_app_id": "A0001",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1760000000,
        "event": {
            "type": kind,
            "channel_type": "im" if kind == "message" else "channel",
            "user": "U0HUMAN",
            "text": f"<@U0BOT> {text}",
            "ts": ts,
            "channel": "C0CHAN",
            "event_ts": ts,
        },
    }
    return json.dumps(envelope).encode()


def slack_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + stamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }


def discord_interaction(interaction_id: str, text: str, token: str = "aW50ZXJhY3Rpb24") -> bytes:
    interaction = {
        "id": interaction_id,
        "application_id": "1200000000000000001",
        "type": 2,
        "token": token,
        "version": 1,
        "data": {
            "id": "1250000000000000001",
            "name": "ask",
            "type": 1,
            "options": [{"name": "prompt", "type": 3, "value": text}],
        },
        "guild_id": "1100000000000000001",
        "channel_id": "1110000000000000001",
        "member": {"user": {"id": "1000000000000000001", "username": "ada"}, "roles": []},
    }
    return json.dumps(interaction).encode()


def discord_headers(body: bytes, key: Ed25519PrivateKey = DISCORD_KEY) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "X-Signature-Ed25519": key.sign(stamp.encode() + body).hex(),
        "X-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def whatsapp_message(message_id: str, text: str, sender: str = "447700900123") -> bytes:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Ada"}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": message_id,
                                    "timestamp": "1760000000",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()  # ensure_ascii, as Meta escapes non-ASCII


def whatsapp_headers(app_secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def inbound_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(ChannelInbound)) or 0)


def model_calls(fake_ollama: Any) -> int:
    return sum(1 for path, _ in fake_ollama.requests if path == "/api/chat")


def settle(seconds: float = 1.5) -> None:
    """Give the worker time to do what it should not (a second answer)."""
    time.sleep(seconds)

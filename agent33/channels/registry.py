"""The platforms by kind."""

from __future__ import annotations

from agent33.channels.discord import Discord
from agent33.channels.protocol import Adapter
from agent33.channels.slack import Slack
from agent33.channels.telegram import Telegram
from agent33.channels.whatsapp import WhatsApp
from agent33.errors import NotFound

ADAPTERS: dict[str, Adapter] = {a.kind: a for a in (Telegram(), Slack(), Discord(), WhatsApp())}
KINDS = tuple(ADAPTERS)


def adapter(kind: str) -> Adapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise NotFound(
            f"no channel platform {kind!r}", fields={"channel": ["unknown platform"]}
        ) from None

"""Chat turns that outlive their worker: the redelivery budget and the API's give-up marker.

A chat task is acknowledged late, so a turn whose worker died is delivered again. Only such a
redelivery touches these keys (one Redis round trip), so a normal turn costs nothing more: it
counts the delivery against `chat_redeliveries` and reads whether the API already gave up and
told the client, in which case answering would record a turn the client was told failed.
"""

from __future__ import annotations

from typing import Literal

from agent33.agents.sessions import RESULT_TTL_S, redis_client
from agent33.config import Settings

DELIVERIES_PREFIX = "agent33:chat-deliveries:"
ABANDONED_PREFIX = "agent33:chat-abandoned:"
KEY_TTL_S = 24 * 3600  # a turn redelivered after the visibility timeout still finds its marker

Verdict = Literal["run", "abandoned", "spent"]


def abandon(settings: Settings, request_id: str) -> None:
    """The API answered the client with an error: a later delivery must not answer."""
    redis_client(settings).set(f"{ABANDONED_PREFIX}{request_id}", "1", ex=KEY_TTL_S)


def redelivery(settings: Settings, request_id: str) -> tuple[Verdict, int]:
    """What a redelivered turn should do, and how many times it has been redelivered."""
    pipe = redis_client(settings).pipeline(transaction=True)
    pipe.get(f"{ABANDONED_PREFIX}{request_id}")
    pipe.incr(f"{DELIVERIES_PREFIX}{request_id}")
    pipe.expire(f"{DELIVERIES_PREFIX}{request_id}", max(KEY_TTL_S, RESULT_TTL_S))
    abandoned, count, _ = pipe.execute()
    if abandoned is not None:
        return "abandoned", int(count)
    if int(count) > settings.chat_redeliveries:
        return "spent", int(count)
    return "run", int(count)

"""The channel protocol: one message model for every platform, and what an adapter must do.

An adapter verifies the platform's own signature over the raw body, normalises a delivery to
`Inbound` messages (or an immediate answer such as Slack's challenge or Discord's PONG), and
sends one chunk of an answer through the platform's HTTP API, reporting whether a failure is
worth retrying and how long the platform asked us to wait.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from agent33.errors import Agent33Error

TIMEOUT = 15.0
USER_AGENT = "Agent33-Channels/1"


class BadSignature(Agent33Error):
    """A missing, wrong or stale platform signature: 401, nothing runs."""

    code = "bad_signature"
    http_status = 401


@dataclass(frozen=True)
class WebhookRequest:
    """What an adapter sees of one webhook call; `body` is the raw bytes as received."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ChannelConfig:
    """A channel with its vault secrets resolved (plaintexts: never logged)."""

    name: str
    api_url: str
    options: Mapping[str, Any]
    secrets: Mapping[str, str]


@dataclass(frozen=True)
class Inbound:
    """One message from a person: `event_id` is the platform's delivery id (the dedupe key);
    `extra` carries what the reply needs (Discord's interaction token, a Slack thread)."""

    event_id: str
    sender: str
    conversation: str
    text: str
    reply_to: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """A parsed delivery: the messages, and the HTTP answer the platform expects at once."""

    messages: list[Inbound] = field(default_factory=list)
    status: int = 200
    body: Any = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class Outgoing:
    """One chunk to send; `index` 0 is the first chunk of an answer."""

    conversation: str
    text: str
    index: int
    reply_to: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    """The platform's verdict on one chunk."""

    ok: bool
    ref: str | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None


class Adapter(Protocol):
    """One platform. `limit` is the longest text one message may carry; `pace` the seconds
    between two messages to one conversation (the platform's per-chat rate limit)."""

    kind: str
    default_api_url: str
    limit: int
    pace: float
    secret_roles: tuple[str, ...]
    option_names: tuple[str, ...]

    def handshake(self, request: WebhookRequest, config: ChannelConfig) -> Received | None:
        """Answer a platform's GET verification of the webhook URL; None: no such handshake."""

    def verify(self, request: WebhookRequest, config: ChannelConfig, now: float) -> None:
        """Raise BadSignature unless the platform signed exactly these bytes."""

    def parse(self, request: WebhookRequest, config: ChannelConfig) -> Received:
        """The delivery's messages and the immediate answer (verified requests only)."""

    def send(self, config: ChannelConfig, out: Outgoing) -> Sent:
        """Send one chunk through the platform's API."""


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality of a received token or signature with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def split(text: str, limit: int) -> list[str]:
    """Cut `text` into chunks of at most `limit` characters, at a paragraph, line or word
    boundary when one is in the second half of the chunk; never an empty chunk."""
    text = text.strip() or "(no answer)"
    chunks: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = -1
        for mark in ("\n\n", "\n", " "):
            at = window.rfind(mark)
            if at >= limit // 2:
                cut = at
                break
        if cut == -1:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def retry_after_header(response: requests.Response) -> float | None:
    try:
        value = response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except ValueError:
        return None


def call(
    method: str, url: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> requests.Response | Sent:
    """One JSON call to a platform API: its response, or a retryable `Sent` on a network error.
    The platform URLs come from the operator's channel configuration, not from messages."""
    try:
        return requests.request(
            method,
            url,
            json=dict(body),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return Sent(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True)


def json_of(response: requests.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def status_failure(response: requests.Response, detail: str) -> Sent:
    """A non-2xx answer: 429 and 5xx are worth retrying, other 4xx are not."""
    status = response.status_code
    return Sent(
        ok=False,
        error=f"HTTP {status}: {detail}"[:500],
        retryable=status == 429 or status >= 500,
        retry_after=retry_after_header(response),
    )

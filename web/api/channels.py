"""`/api/v1/channels`: chat platforms in front of agents.

`POST /api/v1/channels/<kind>/<name>` is the platform's webhook: no API key, the platform's
own signature authenticates (checked over the raw bytes before anything runs); a GET on the
same URL answers WhatsApp's verification handshake. The rest manages channels and pairing
codes with the `channels:*` scopes.
"""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
import structlog
from flask import Response, request
from flask.views import MethodView

from agent33.channels import pairing, store
from agent33.channels.protocol import Received, WebhookRequest
from agent33.channels.receive import Outcome, handshake, receive
from agent33.channels.schema import ChannelSpecSchema as ChannelCreateSchema
from agent33.db import session_scope
from agent33.db.models import Channel, ChannelInbound, ChannelOutbound
from agent33.errors import ServiceUnavailable, ValidationFailed
from agent33.security import scopes as sc
from tasks.dispatch import publish_channel_reply, publish_channel_send
from web import ratelimit
from web.auth import audit_action, current_principal, require_scopes
from web.extensions import Blueprint, get_settings, list_schema
from web.outbox import publish

log = structlog.get_logger(__name__)
blp = Blueprint(
    "channels", __name__, url_prefix="/api/v1/channels", description="Messaging channels"
)
MAX_BODY = 1024 * 1024


class ChannelSchema(ma.Schema):
    id = ma.fields.UUID()
    kind = ma.fields.String()
    name = ma.fields.String()
    agent = ma.fields.String(allow_none=True)
    workflow = ma.fields.String(allow_none=True)
    api_url = ma.fields.String(allow_none=True)
    options = ma.fields.Dict()
    secrets = ma.fields.Dict(metadata={"description": "role -> vault secret name (not values)"})
    require_pairing = ma.fields.Boolean()
    allowlist = ma.fields.List(ma.fields.String())
    webhook = ma.fields.String(metadata={"description": "The URL to give the platform"})
    created_at = ma.fields.DateTime()


class PairingRequestSchema(ma.Schema):
    user = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=150),
        metadata={"description": "The Agent33 user to pair (default: the caller)"},
    )


class PairingSchema(ma.Schema):
    code = ma.fields.String()
    user = ma.fields.String()
    expires_in = ma.fields.Integer()
    instructions = ma.fields.String()


ChannelListSchema = list_schema(ChannelSchema, "Channel")


def _dump(channel: Channel) -> dict[str, Any]:
    data = {name: getattr(channel, name) for name in ChannelSchema().fields if name != "webhook"}
    data["webhook"] = (
        f"{request.host_url.rstrip('/')}{blp.url_prefix}/{channel.kind}/{channel.name}"
    )
    return data


@blp.route("")
class Channels(MethodView):
    @require_scopes(sc.CHANNELS_READ)
    @blp.response(200, ChannelListSchema)
    def get(self) -> dict[str, Any]:
        """List channels"""
        with session_scope() as session:
            items = [_dump(c) for c in store.list_all(session=session)]
        return {"items": items, "total": len(items)}

    @require_scopes(sc.CHANNELS_WRITE)
    @blp.arguments(ChannelCreateSchema)
    @blp.response(201, ChannelSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a channel

        Its secrets are read from the vault by name when a message arrives (set them with
        `agent33 vault set`); 400 naming the field for an unknown platform, a missing option
        or an unknown secret role, 409 when the channel exists.
        """
        with session_scope() as session:
            channel = store.create(session=session, created_by=current_principal().subject, **body)
            audit_action(session, "channels.create", target=f"{channel.kind}/{channel.name}")
            return _dump(channel)


def _webhook_request() -> WebhookRequest:
    if (request.content_length or 0) > MAX_BODY:
        raise ValidationFailed("the body is too large", fields={"body": ["over 1 MiB"]})
    return WebhookRequest(
        method=request.method,
        headers=dict(request.headers),
        query=request.args.to_dict(),
        body=request.get_data(cache=True),
    )


def _answer(received: Received) -> Response:
    if received.content_type == "application/json":
        body = json.dumps({} if received.body is None else received.body)
    else:
        body = str(received.body or "")
    return Response(body, status=received.status, content_type=received.content_type)


def _forget(outcome: Outcome) -> None:
    """Unclaim a delivery whose work could not be queued, so the platform's retry runs it."""
    ids = list(outcome.replies)
    with session_scope() as session:
        for outbound_id in outcome.sends:
            out = session.get(ChannelOutbound, outbound_id)
            if out is not None and out.inbound_id is not None:
                ids.append(out.inbound_id)
            if out is not None:
                session.delete(out)
        for inbound_id in ids:
            row = session.get(ChannelInbound, inbound_id)
            if row is not None:
                session.delete(row)


def _publish(outcome: Outcome) -> None:
    publish(outcome.outbox)  # started runs: the relay republishes what this cannot
    try:
        for inbound_id in outcome.replies:
            publish_channel_reply(inbound_id)
        for outbound_id in outcome.sends:
            publish_channel_send(outbound_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the platform retries
        log.warning("channel.publish_failed", error=str(exc))
        _forget(outcome)
        raise ServiceUnavailable("the task queue is unavailable; retry later") from None


@blp.route("/<string:kind>/<string:name>")
class ChannelWebhook(MethodView):
    webhook_signed = True  # web.auth: no API key; the platform's signature authenticates
    webhook_handshake = True  # and a GET answers the platform's URL check (WhatsApp)

    @blp.response(200)
    def get(self, kind: str, name: str) -> Response:
        """Answer a platform's webhook verification (WhatsApp `hub.challenge`)

        200 with `hub.challenge` as plain text when `hub.verify_token` matches the channel's
        `verify` secret; 401 when it does not; 404 for an unknown channel or a platform with
        no GET handshake.
        """
        ratelimit.refuse_if_failing()
        try:
            answer = handshake(
                settings=get_settings(), kind=kind, name=name, request=_webhook_request()
            )
        except Exception as exc:
            if getattr(exc, "http_status", 500) == 401:
                ratelimit.count_auth_failure()
            raise
        return _answer(answer)

    @blp.response(200)
    def post(self, kind: str, name: str) -> Response:
        """Receive a platform's webhook

        Verifies the platform's signature over the raw body (Telegram secret token, Slack v0
        signature with its 5-minute window, Discord Ed25519, WhatsApp `X-Hub-Signature-256`),
        then queues the agent's answer; a delivery seen before is acknowledged and ignored.
        401 bad or missing signature (nothing runs), 404 unknown channel, 400 a body that is
        not the platform's JSON, 503 when the task queue is down (the platform retries).
        """
        ratelimit.refuse_if_failing()
        try:
            outcome = receive(
                settings=get_settings(), kind=kind, name=name, request=_webhook_request()
            )
        except Exception as exc:
            if getattr(exc, "http_status", 500) == 401:
                ratelimit.count_auth_failure()
            raise
        _publish(outcome)
        return _answer(outcome.received)

    @require_scopes(sc.CHANNELS_WRITE)
    @blp.response(204)
    def delete(self, kind: str, name: str) -> None:
        """Remove a channel (its messages and paired identities go with it)"""
        with session_scope() as session:
            store.remove(session=session, kind=kind, name=name)
            audit_action(session, "channels.delete", target=f"{kind}/{name}")


@blp.route("/<string:kind>/<string:name>/pairings")
class ChannelPairings(MethodView):
    @require_scopes(sc.CHANNELS_WRITE)
    @blp.arguments(PairingRequestSchema)
    @blp.response(201, PairingSchema)
    def post(self, body: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
        """Issue a one-time pairing code

        The user sends `/pair <code>` to the bot within ten minutes; from then on that sender's
        messages run as the user. 404 for an unknown channel or user.
        """
        username = body["user"] or current_principal().subject
        with session_scope() as session:
            channel = store.get(session=session, kind=kind, name=name)
            code = pairing.issue(
                settings=get_settings(), session=session, channel=channel, username=username
            )
            audit_action(session, "channels.pair", target=f"{kind}/{name}:{username}")
        return {
            "code": code,
            "user": username,
            "expires_in": pairing.CODE_TTL_S,
            "instructions": f"Send '/pair {code}' to the bot within ten minutes.",
        }

"""`/api/v1/webhook-subscriptions`: outbound webhooks (the inbound ones are `web.api.webhooks`).

A subscription's signing secret is generated here, kept in the vault, and returned once, in the
creation response; its URL must pass the outbound HTTP policy now and again at each delivery.
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import func, select

from agent33.automation import webhooks_out
from agent33.db import session_scope
from agent33.db.models import Webhook, WebhookDelivery
from agent33.security import scopes as sc
from web.auth import audit_action, current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, get_settings, list_schema, page, page_schema

blp = Blueprint(
    "webhook_subscriptions",
    __name__,
    url_prefix="/api/v1/webhook-subscriptions",
    description="Outbound webhook subscriptions (Standard Webhooks)",
)


class WebhookCreateSchema(ma.Schema):
    url = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    events = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(webhooks_out.EVENT_TYPES)),
        required=True,
        validate=ma.validate.Length(min=1, max=len(webhooks_out.EVENT_TYPES)),
        metadata={"description": f"Any of: {', '.join(webhooks_out.EVENT_TYPES)}"},
    )
    workflow = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "Only runs of this workflow (default: every workflow)"},
    )
    description = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(max=500)
    )


class WebhookUpdateSchema(ma.Schema):
    active = ma.fields.Boolean(required=True)


class WebhookSchema(ma.Schema):
    id = ma.fields.UUID()
    url = ma.fields.String()
    events = ma.fields.List(ma.fields.String())
    workflow = ma.fields.String(allow_none=True)
    description = ma.fields.String(allow_none=True)
    active = ma.fields.Boolean()
    created_by = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()


class WebhookCreatedSchema(WebhookSchema):
    secret = ma.fields.String(
        metadata={"description": "`whsec_...` signing secret; shown only in this response"}
    )


class DeliverySchema(ma.Schema):
    id = ma.fields.Integer()
    msg_id = ma.fields.String(metadata={"description": "The `webhook-id` of every attempt"})
    run_id = ma.fields.UUID(allow_none=True)
    event_type = ma.fields.String()
    state = ma.fields.String(metadata={"description": "pending, retrying, delivered or dead"})
    attempts = ma.fields.Integer()
    last_status = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    next_attempt_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()
    delivered_at = ma.fields.DateTime(allow_none=True)


WebhookListSchema = list_schema(WebhookSchema, "Webhook")
DeliveryPageSchema = page_schema(DeliverySchema, "WebhookDelivery")


def _dump(hook: Webhook) -> dict[str, Any]:
    return {name: getattr(hook, name) for name in WebhookSchema().fields}


@blp.route("")
class WebhookSubscriptions(MethodView):
    @require_scopes(sc.WEBHOOKS_READ)
    @blp.response(200, WebhookListSchema)
    def get(self) -> dict[str, Any]:
        """List webhook subscriptions"""
        with session_scope() as session:
            items = [_dump(hook) for hook in webhooks_out.list_all(session=session)]
        return {"items": items, "total": len(items)}

    @require_scopes(sc.WEBHOOKS_WRITE)
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Subscribe a URL to run events

        Deliveries are signed with the returned secret (Standard Webhooks); 400 naming `url`
        when the URL is outside the outbound HTTP policy (AGENT33_HTTP_ALLOWLIST, private
        addresses), or `events` for an unknown event type.
        """
        with session_scope() as session:
            hook, secret = webhooks_out.create(
                session=session,
                settings=get_settings(),
                url=body["url"],
                events=body["events"],
                workflow=body["workflow"],
                description=body["description"],
                created_by=current_principal().subject,
            )
            audit_action(session, "webhooks.create", target=str(hook.id))
            return {**_dump(hook), "secret": secret}


@blp.route("/<uuid:webhook_id>")
class WebhookSubscription(MethodView):
    @require_scopes(sc.WEBHOOKS_READ)
    @blp.response(200, WebhookSchema)
    def get(self, webhook_id: uuid.UUID) -> dict[str, Any]:
        """Get a webhook subscription"""
        with session_scope() as session:
            return _dump(webhooks_out.get(session=session, webhook_id=webhook_id))

    @require_scopes(sc.WEBHOOKS_WRITE)
    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema)
    def patch(self, body: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
        """Pause or resume a subscription (`active`)"""
        with session_scope() as session:
            hook = webhooks_out.set_active(
                session=session, webhook_id=webhook_id, active=body["active"]
            )
            audit_action(session, "webhooks.update", target=str(webhook_id))
            return _dump(hook)

    @require_scopes(sc.WEBHOOKS_WRITE)
    @blp.response(204)
    def delete(self, webhook_id: uuid.UUID) -> None:
        """Delete a subscription, its secret and its deliveries (dead letters stay)"""
        with session_scope() as session:
            webhooks_out.delete(session=session, webhook_id=webhook_id)
            audit_action(session, "webhooks.delete", target=str(webhook_id))


@blp.route("/<uuid:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @require_scopes(sc.WEBHOOKS_READ)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    def get(self, query: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
        """List a subscription's deliveries, newest first"""
        with session_scope() as session:
            webhooks_out.get(session=session, webhook_id=webhook_id)
            where = WebhookDelivery.webhook_id == webhook_id
            total = session.scalar(select(func.count()).select_from(WebhookDelivery).where(where))
            rows = session.scalars(
                select(WebhookDelivery)
                .where(where)
                .order_by(WebhookDelivery.id.desc())
                .limit(query["limit"])
                .offset(query["offset"])
            )
            items = [{name: getattr(row, name) for name in DeliverySchema().fields} for row in rows]
        return page(items, int(total or 0), query)

"""`/api/v1/deadletters`: messages the system gave up on; read, replay or purge them."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.automation import dead_letters
from agent33.db import session_scope
from agent33.db.models import DeadLetter
from agent33.engine.replay import replay
from agent33.security import scopes as sc
from tasks.dispatch import publish_channel_send, publish_delivery
from web.auth import audit_action, current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, page, page_schema
from web.outbox import publish

blp = Blueprint(
    "deadletters", __name__, url_prefix="/api/v1/deadletters", description="Dead letters"
)


class DeadLetterQuerySchema(PageQuerySchema):
    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(dead_letters.KINDS))


class PurgeQuerySchema(ma.Schema):
    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(dead_letters.KINDS))


class DeadLetterSchema(ma.Schema):
    id = ma.fields.UUID()
    kind = ma.fields.String(metadata={"description": "`webhook`, `step` or `channel`"})
    ref = ma.fields.String(metadata={"description": "The delivery id, or the step run id"})
    run_id = ma.fields.UUID(allow_none=True)
    payload = ma.fields.Dict()
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    replayed_at = ma.fields.DateTime(allow_none=True)


class ReplayedSchema(ma.Schema):
    id = ma.fields.UUID()
    kind = ma.fields.String()
    replayed = ma.fields.Boolean()


class PurgedSchema(ma.Schema):
    purged = ma.fields.Integer()


DeadLetterPageSchema = page_schema(DeadLetterSchema, "DeadLetter")


def _dump(letter: DeadLetter) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in DeadLetterSchema().fields}


@blp.route("")
class DeadLetters(MethodView):
    @require_scopes(sc.DEADLETTERS_READ)
    @blp.arguments(DeadLetterQuerySchema, location="query")
    @blp.response(200, DeadLetterPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List dead letters, newest first"""
        with session_scope() as session:
            rows, total = dead_letters.list_page(
                session=session, kind=query["kind"], limit=query["limit"], offset=query["offset"]
            )
            items = [_dump(row) for row in rows]
        return page(items, total, query)

    @require_scopes(sc.DEADLETTERS_WRITE)
    @blp.arguments(PurgeQuerySchema, location="query")
    @blp.response(200, PurgedSchema)
    def delete(self, query: dict[str, Any]) -> dict[str, Any]:
        """Purge dead letters (all, or `?kind=` only)"""
        with session_scope() as session:
            purged = dead_letters.purge(session=session, kind=query["kind"])
            audit_action(session, "deadletters.purge", target=query["kind"] or "all")
        return {"purged": purged}


@blp.route("/<uuid:letter_id>")
class DeadLetterById(MethodView):
    @require_scopes(sc.DEADLETTERS_READ)
    @blp.response(200, DeadLetterSchema)
    def get(self, letter_id: uuid.UUID) -> dict[str, Any]:
        """Get a dead letter"""
        with session_scope() as session:
            return _dump(dead_letters.get(session=session, letter_id=letter_id))

    @require_scopes(sc.DEADLETTERS_WRITE)
    @blp.response(204)
    def delete(self, letter_id: uuid.UUID) -> None:
        """Purge one dead letter"""
        with session_scope() as session:
            dead_letters.remove(session=session, letter_id=letter_id)
            audit_action(session, "deadletters.purge", target=str(letter_id))


@blp.route("/<uuid:letter_id>/replay")
class DeadLetterReplay(MethodView):
    @require_scopes(sc.DEADLETTERS_WRITE)
    @blp.response(202, ReplayedSchema)
    def post(self, letter_id: uuid.UUID) -> dict[str, Any]:
        """Replay a dead letter

        A webhook delivery is sent again with a fresh attempt budget and the same `webhook-id`;
        a dead-lettered step resumes its run (409 unless the run is failed or cancelled); a
        channel answer sends its unsent chunks again.
        """
        with session_scope() as session:
            result = replay(session=session, letter_id=letter_id, by=current_principal().subject)
            audit_action(session, "deadletters.replay", target=str(letter_id))
        publish(result.outbox_ids)
        for delivery_id in result.delivery_ids:
            publish_delivery(delivery_id)
        for outbound_id in result.channel_ids:
            publish_channel_send(outbound_id)
        return {"id": letter_id, "kind": result.kind, "replayed": True}

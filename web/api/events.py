"""`POST /api/v1/events/<name>`: an outside event starts a run for each sensor listening to it."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.automation.events import send_event
from agent33.db import session_scope
from agent33.errors import ValidationFailed
from agent33.security import scopes as sc
from web.api.workflows import IDEMPOTENCY_KEY_MAX, IdempotencyHeaderSchema
from web.auth import require_scopes
from web.extensions import Blueprint, get_settings
from web.outbox import publish

blp = Blueprint("events", __name__, url_prefix="/api/v1/events", description="Named events")


class EventBodySchema(ma.Schema):
    payload = ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=dict,
        metadata={"description": "The event's data; sensor templates read `event.payload`"},
    )
    key = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX),
        metadata={"description": "Idempotency key (or the `Idempotency-Key` header)"},
    )


class EventRunSchema(ma.Schema):
    sensor = ma.fields.String()
    id = ma.fields.UUID(attribute="run_id")
    workflow = ma.fields.String()
    duplicate = ma.fields.Boolean(metadata={"description": "true: this key started it before"})


class EventAcceptedSchema(ma.Schema):
    event = ma.fields.String()
    key = ma.fields.String(allow_none=True)
    runs = ma.fields.List(ma.fields.Nested(EventRunSchema))


@blp.route("/<string:name>")
class Event(MethodView):
    @require_scopes(sc.EVENTS_WRITE)
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.arguments(EventBodySchema)
    @blp.response(202, EventAcceptedSchema)
    def post(
        self, body: dict[str, Any], name: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Send an event

        Starts the workflow of every enabled `event` sensor listening to `name`, with the
        event as input, and answers 202 with the run ids. With a key (header or `key`), the
        same key returns the same runs (`duplicate: true`) and starts nothing. 404 when no
        sensor listens to `name`; 400 naming `payload` when a sensor's inputs cannot be made.
        """
        key = _one_key(idempotency_key, body["key"])
        with session_scope() as session:
            fired = send_event(
                session=session,
                settings=get_settings(),
                name=name,
                payload=body["payload"],
                key=key,
            )
        publish([i for f in fired for i in f.outbox_ids])
        runs = [
            {
                "sensor": f.sensor,
                "run_id": f.run_id,
                "workflow": f.workflow,
                "duplicate": not f.created,
            }
            for f in fired
        ]
        return {"event": name, "key": key, "runs": runs}


def _one_key(header: str | None, field: str | None) -> str | None:
    if header is not None and field is not None and header != field:
        raise ValidationFailed(
            "the Idempotency-Key header and the body's `key` differ",
            fields={"key": ["differs from the Idempotency-Key header"]},
        )
    return header if header is not None else field

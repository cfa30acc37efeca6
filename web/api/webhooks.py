"""`POST /api/v1/webhooks/<workflow>`: a signed outside event starts a run of that workflow.

No API key: the HMAC signature is the credential (secret `WEBHOOK_<WORKFLOW>` in the vault,
e.g. `agent33 vault set WEBHOOK_DEMO_GREETING`). The JSON body becomes the run's inputs; a
`Webhook-Id` header makes redelivery of the same event return the same run.
"""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView

from agent33.db import session_scope
from agent33.engine.service import start_run
from agent33.errors import NotFound, ValidationFailed
from agent33.security import signatures
from agent33.security.vault import get_secret, vault_for
from web.extensions import Blueprint, get_settings
from web.outbox import publish

blp = Blueprint(
    "webhooks", __name__, url_prefix="/api/v1/webhooks", description="Signed inbound webhooks"
)
MAX_BODY = 1024 * 1024


class WebhookRunSchema(ma.Schema):
    id = ma.fields.UUID()
    state = ma.fields.String()
    workflow = ma.fields.String()
    duplicate = ma.fields.Boolean(metadata={"description": "true: this delivery was seen before"})


def secret_name(workflow: str) -> str:
    return "WEBHOOK_" + workflow.upper().replace("-", "_")


def _secret(workflow: str) -> str:
    try:
        with session_scope() as session:
            return get_secret(
                session=session, vault=vault_for(get_settings()), name=secret_name(workflow)
            )
    except NotFound:
        raise NotFound(
            f"no webhook is configured for {workflow!r}", fields={"workflow": ["no webhook secret"]}
        ) from None


def _inputs(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationFailed("the body must be JSON", fields={"body": ["not JSON"]}) from None
    if not isinstance(value, dict):
        raise ValidationFailed("the body must be a JSON object", fields={"body": ["not an object"]})
    return value


@blp.route("/<string:workflow>")
class Webhook(MethodView):
    webhook_signed = True  # web.auth: no API key here, the signature below authenticates

    @blp.response(202, WebhookRunSchema)
    @blp.alt_response(200, schema=WebhookRunSchema, description="A redelivered event")
    def post(self, workflow: str) -> tuple[dict[str, Any], int]:
        """Receive a signed event

        Verifies `X-Agent33-Signature` (HMAC-SHA256 of `timestamp.body`, 5-minute window,
        replays refused), then starts a run with the JSON body as inputs: 202; 401 bad or stale
        signature, 404 no webhook secret for this workflow, 409 replayed signature.
        """
        if (request.content_length or 0) > MAX_BODY:
            raise ValidationFailed("the body is too large", fields={"body": ["over 1 MiB"]})
        body = request.get_data(cache=True)
        header = request.headers.get(signatures.HEADER)
        signatures.parse(header)  # unsigned requests learn nothing, not even if the hook exists
        signed = signatures.verify(secret=_secret(workflow), body=body, header=header)
        delivery = request.headers.get("Webhook-Id", "")[:150] or None
        if delivery is None:
            from agent33.agents.sessions import redis_client

            signatures.claim_nonce(redis_client(get_settings()), workflow, signed.signatures[0])
        key = f"webhook:{workflow}:{delivery}" if delivery else None
        with session_scope() as session:
            run, outbox, created = start_run(
                session=session,
                workflow_name=workflow,
                inputs=_inputs(body),
                idempotency_key=key,
                created_by=f"webhook:{workflow}",
            )
            body_out = {
                "id": run.id,
                "state": run.state,
                "workflow": run.workflow_name,
                "duplicate": not created,
            }
        publish(outbox)
        return body_out, 202 if created else 200

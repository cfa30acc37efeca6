"""`POST /api/v1/webhooks/<workflow>`: a signed outside event starts a run of that workflow.

No API key: the Standard Webhooks signature is the credential (secret `WEBHOOK_<WORKFLOW>` in
the vault, `whsec_<base64>`, e.g. `agent33 vault set WEBHOOK_DEMO_GREETING`). The JSON body
becomes the run's inputs. The signed `webhook-id` is the run's idempotency key, so a sender's
retry (same id, new timestamp and signature) returns the same run; a resent signature is 409.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import marshmallow as ma
from flask import request
from flask.views import MethodView

from agent33.db import session_scope
from agent33.definitions.schemas import NAME
from agent33.engine.service import start_run
from agent33.errors import NotFound, ValidationFailed
from agent33.security import signatures
from agent33.security.ratelimit import limiter_for
from agent33.security.vault import get_secret, vault_for
from web import ratelimit
from web.extensions import Blueprint, get_settings
from web.outbox import publish

blp = Blueprint(
    "webhooks", __name__, url_prefix="/api/v1/webhooks", description="Signed inbound webhooks"
)
MAX_BODY = 1024 * 1024
WORKFLOW_NAME = cast("re.Pattern[str]", NAME.regex)  # only a definition name has a webhook


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


def _signed_headers() -> dict[str, list[str]]:
    """Every value received for each signature header; a stray legacy header is ambiguous."""
    if signatures.LEGACY_HEADER in request.headers:
        raise signatures.BadSignature(
            f"{signatures.LEGACY_HEADER} is no longer accepted (it did not sign the delivery id):"
            f" sign with the Standard Webhooks headers {', '.join(signatures.HEADERS)}",
            fields={signatures.LEGACY_HEADER: ["unsupported"]},
        )
    return {name: request.headers.getlist(name) for name in signatures.HEADERS}


def _verified(workflow: str, body: bytes) -> signatures.Verified:
    """Parse before any lookup (an unsigned request learns nothing, not even whether the hook
    exists), then verify; every bad signature counts against the client's failure budget."""
    ratelimit.refuse_if_failing()
    try:
        headers = _signed_headers()
        signatures.parse(headers)
        if not WORKFLOW_NAME.fullmatch(workflow):
            raise NotFound(f"no webhook is configured for {workflow!r}")
        return signatures.verify(secret=_secret(workflow), body=body, headers=headers)
    except signatures.BadSignature:
        ratelimit.count_auth_failure()
        raise


@blp.route("/<string:workflow>")
class Webhook(MethodView):
    webhook_signed = True  # web.auth: no API key here, the signature below authenticates

    @blp.response(202, WebhookRunSchema)
    @blp.alt_response(200, schema=WebhookRunSchema, description="A redelivered event")
    def post(self, workflow: str) -> tuple[dict[str, Any], int]:
        """Receive a signed event

        Verifies the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and
        `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, 5-minute
        window), then starts a run with the JSON body as inputs: 202; 200 with the same run for
        a sender's retry of that `webhook-id`; 401 bad or stale signature, 404 no webhook secret
        for this workflow, 409 a signature already received, 429 too many failures.
        """
        if (request.content_length or 0) > MAX_BODY:
            raise ValidationFailed("the body is too large", fields={"body": ["over 1 MiB"]})
        body = request.get_data(cache=True)
        signed = _verified(workflow, body)
        scope = secret_name(workflow)  # demo-greeting and demo_greeting share one secret
        signatures.claim_nonce(limiter_for(get_settings()).client, scope, signed.nonce)
        with session_scope() as session:
            run, outbox, created = start_run(
                session=session,
                settings=get_settings(),
                workflow_name=workflow,
                inputs=_inputs(body),
                idempotency_key=f"webhook:{scope}:{signed.webhook_id}",
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

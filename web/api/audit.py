"""`GET /api/v1/audit`: read the audit trail (admins only: it names users, keys and client IPs)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.security import scopes as sc
from agent33.security.audit import list_events
from web.auth import require_scopes
from web.extensions import Blueprint, PageQuerySchema, page, page_schema

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit trail")


class AuditQuerySchema(PageQuerySchema):
    action = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "Only this action, e.g. `auth.login_failed`"},
    )


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    action = ma.fields.String()
    principal = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    target = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(metadata={"description": "`ok`, `denied` or `failed`"})
    details = ma.fields.Dict(allow_none=True)


AuditPageSchema = page_schema(AuditEventSchema, "Audit")


@blp.route("")
class AuditEvents(MethodView):
    @require_scopes(sc.ADMIN)
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List audit events

        Newest first; filter by `action`. Details never contain passwords, tokens or keys.
        """
        with session_scope() as session:
            events, total = list_events(
                session=session,
                action=query["action"],
                limit=query["limit"],
                offset=query["offset"],
            )
        return page(events, total, query)

"""`/api/v1/alerts`: every alert rule with its current state and its last incident."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.observability.alert_rules import KINDS
from agent33.observability.alerts import listing
from agent33.security import scopes as sc
from web.auth import require_scopes
from web.extensions import Blueprint, get_settings

blp = Blueprint("alerts", __name__, url_prefix="/api/v1/alerts", description="Alerts")


class IncidentSchema(ma.Schema):
    incident_id = ma.fields.Integer()
    rule = ma.fields.String()
    kind = ma.fields.String()
    state = ma.fields.String(metadata={"description": "`firing` or `resolved`"})
    value = ma.fields.Float(metadata={"description": "What was measured when it fired"})
    threshold = ma.fields.Float()
    message = ma.fields.String()
    details = ma.fields.Dict()
    workflow = ma.fields.String(allow_none=True)
    queue = ma.fields.String(allow_none=True)
    fired_at = ma.fields.String(metadata={"description": "ISO 8601"})
    resolved_at = ma.fields.String(allow_none=True, metadata={"description": "ISO 8601"})
    resolved_value = ma.fields.Float(allow_none=True)


class AlertRuleStateSchema(ma.Schema):
    name = ma.fields.String()
    kind = ma.fields.String(validate=ma.validate.OneOf(KINDS))
    description = ma.fields.String()
    threshold = ma.fields.Float()
    for_ = ma.fields.Float(data_key="for", attribute="for", metadata={"description": "Seconds"})
    window = ma.fields.Float(allow_none=True, metadata={"description": "Seconds"})
    workflow = ma.fields.String(allow_none=True)
    action = ma.fields.String(allow_none=True)
    queue = ma.fields.String(allow_none=True)
    min_count = ma.fields.Integer()
    origin = ma.fields.String(metadata={"description": "The file or variable defining it"})
    state = ma.fields.String(
        metadata={"description": "`ok`, `pending` (breached, waiting for `for`) or `firing`"}
    )
    value = ma.fields.Float(allow_none=True, metadata={"description": "Last measured value"})
    checked_at = ma.fields.DateTime(allow_none=True)
    pending_since = ma.fields.DateTime(allow_none=True)
    last_incident = ma.fields.Nested(IncidentSchema, allow_none=True)


class AlertListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AlertRuleStateSchema))
    total = ma.fields.Integer(metadata={"description": "How many rules there are"})


@blp.route("")
class Alerts(MethodView):
    @require_scopes(sc.RUNS_READ)
    @blp.response(200, AlertListSchema)
    def get(self) -> dict[str, Any]:
        """List alert rules

        Every rule (from `definitions/alerts/` and AGENT33_ALERT_RULES) with its state, the
        value beat measured last, and its open or latest incident.
        """
        with session_scope() as session:
            items = listing(session=session, settings=get_settings())
        return {"items": items, "total": len(items)}

"""`/api/v1/workflows`: browse stored workflow definitions and start runs of them."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.db.models import WorkflowDefinition
from agent33.definitions.registry import get_workflow, list_workflows
from agent33.engine.service import start_run
from agent33.security import scopes as sc
from tasks.dispatch import flush_outbox
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 200

blp = Blueprint(
    "workflows", __name__, url_prefix="/api/v1/workflows", description="Workflow definitions"
)


class WorkflowSummarySchema(ma.Schema):
    name = ma.fields.String()
    version = ma.fields.Integer()
    description = ma.fields.String()
    source = ma.fields.String()
    checksum = ma.fields.String()
    created_at = ma.fields.DateTime()


class WorkflowSchema(WorkflowSummarySchema):
    spec = ma.fields.Dict(metadata={"description": "The validated definition document"})


class WorkflowListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(WorkflowSummarySchema))
    total = ma.fields.Integer()


class WorkflowQuerySchema(ma.Schema):
    version = ma.fields.Integer(validate=ma.validate.Range(min=1))


class RunCreateSchema(ma.Schema):
    inputs = ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=dict,
        metadata={"description": "Workflow inputs (an object); omitted means {}"},
    )
    version = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=1),
        metadata={"description": "Workflow version; omitted means the latest"},
    )


class IdempotencyHeaderSchema(ma.Schema):
    idempotency_key = ma.fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=ma.validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX),
        metadata={"description": "Repeat a request safely: the same key returns the same run"},
    )


class RunLinksSchema(ma.Schema):
    self = ma.fields.String()


class RunCreatedSchema(ma.Schema):
    id = ma.fields.UUID()
    state = ma.fields.String()
    workflow = ma.fields.String(attribute="workflow_name")
    version = ma.fields.Integer(attribute="workflow_version")
    links = ma.fields.Nested(RunLinksSchema)


@blp.route("")
class Workflows(MethodView):
    @require_scopes(sc.WORKFLOWS_READ)
    @blp.response(200, WorkflowListSchema)
    def get(self) -> dict[str, Any]:
        """List workflows

        The latest version of each stored workflow, by name.
        """
        with session_scope() as session:
            rows = list_workflows(session=session)
        return {"items": rows, "total": len(rows)}


@blp.route("/<string:name>")
class WorkflowByName(MethodView):
    @require_scopes(sc.WORKFLOWS_READ)
    @blp.arguments(WorkflowQuerySchema, location="query")
    @blp.response(200, WorkflowSchema)
    def get(self, query: dict[str, Any], name: str) -> WorkflowDefinition:
        """Get a workflow

        The latest version, or the one named by `?version=`; 404 when absent.
        """
        with session_scope() as session:
            return get_workflow(session=session, name=name, version=query.get("version"))


@blp.route("/<string:name>/runs")
class WorkflowRuns(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.arguments(RunCreateSchema)
    @blp.response(202, RunCreatedSchema)
    @blp.alt_response(200, schema=RunCreatedSchema, description="Repeated Idempotency-Key")
    def post(
        self, body: dict[str, Any], name: str, idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Start a run

        Validates `inputs` against the workflow, records the run and queues its first steps;
        answers 202 at once with the run id. A repeated `Idempotency-Key` returns the
        existing run with 200 and starts nothing.
        """
        with session_scope() as session:
            run, outbox_ids, created = start_run(
                session=session,
                workflow_name=name,
                inputs=body["inputs"],
                version=body["version"],
                idempotency_key=idempotency_key,
                created_by=current_principal().subject,
            )
        _publish(outbox_ids)
        location = f"/api/v1/runs/{run.id}"
        result = {
            "id": run.id,
            "state": run.state,
            "workflow_name": run.workflow_name,
            "workflow_version": run.workflow_version,
            "links": {"self": location},
        }
        return result, 202 if created else 200, {"Location": location}


def _publish(outbox_ids: list[int]) -> None:
    """After the commit: the run is durable, so a failed publish is left to the outbox relay."""
    try:
        flush_outbox(outbox_ids)
    except Exception:
        log.exception("publishing outbox %s failed; the relay will retry", outbox_ids)

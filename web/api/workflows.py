"""`/api/v1/workflows`: store, validate, browse and delete workflow definitions; start runs."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.automation.schedule_store import resync_declared, sync_declared
from agent33.db import session_scope
from agent33.db.models import Run, WorkflowDefinition
from agent33.definitions.loader import parse_workflow
from agent33.definitions.models import WorkflowDef
from agent33.definitions.registry import get_workflow, is_latest, list_workflows, save_workflow
from agent33.definitions.schemas import ON_BUDGET, BudgetSchema, budget_of
from agent33.definitions.versions import require_newer
from agent33.engine.service import start_run
from agent33.engine.validation import validate_workflow
from agent33.errors import Conflict, DefinitionError, ValidationFailed
from agent33.security import scopes as sc
from agent33.tools import known_tools
from agent33.wire import MAX_PRIORITY
from web.auth import current_principal, require_scopes
from web.extensions import BIGINT_MAX, Blueprint, get_settings, list_schema
from web.outbox import publish

IDEMPOTENCY_KEY_MAX = 200
Stored = tuple[WorkflowDefinition, int, dict[str, str]]

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


WorkflowListSchema = list_schema(WorkflowSummarySchema, "Workflow")


class WorkflowDocumentSchema(ma.Schema):
    """Passed through untouched: the definitions loader checks it and names `steps.<id>.<field>`."""

    class Meta:
        unknown = ma.INCLUDE

    name = ma.fields.Raw(allow_none=True, metadata={"type": "string"})
    version = ma.fields.Raw(
        allow_none=True,
        metadata={"type": "integer", "default": 1, "minimum": 1, "maximum": 1_000_000},
    )
    description = ma.fields.Raw(allow_none=True, metadata={"type": "string"})
    inputs = ma.fields.Raw(allow_none=True, metadata={"type": "object"})
    steps = ma.fields.Raw(allow_none=True, metadata={"type": "array", "items": {"type": "object"}})
    outputs = ma.fields.Raw(allow_none=True, metadata={"type": "object"})
    schedules = ma.fields.Raw(
        allow_none=True,
        metadata={
            "type": "array",
            "items": {"type": "object"},
            "description": "Schedules of this workflow, as `POST /api/v1/schedules` takes them "
            "(without `workflow`); stored with the workflow's latest version",
        },
    )


class WorkflowValidSchema(ma.Schema):
    valid = ma.fields.Boolean()
    name = ma.fields.String()
    version = ma.fields.Integer()
    steps = ma.fields.Integer(metadata={"description": "How many steps the workflow has"})


class WorkflowDeletedSchema(ma.Schema):
    name = ma.fields.String()
    versions = ma.fields.List(ma.fields.Integer(), metadata={"description": "Versions deleted"})


class WorkflowQuerySchema(ma.Schema):
    version = ma.fields.Integer(validate=ma.validate.Range(min=1, max=BIGINT_MAX))


class RunCreateSchema(ma.Schema):
    inputs = ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=dict,
        metadata={"description": "Workflow inputs (an object); omitted means {}"},
    )
    version = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=1, max=BIGINT_MAX),
        metadata={"description": "Workflow version; omitted means the latest"},
    )
    priority = ma.fields.Integer(
        load_default=0,
        validate=ma.validate.Range(min=0, max=MAX_PRIORITY),
        metadata={"description": "0 (default) to 9 (most urgent): the broker serves it first"},
    )
    budget = ma.fields.Nested(
        BudgetSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "A run-wide model budget instead of the workflow's"},
    )
    on_budget = ma.fields.String(
        load_default="fail",
        validate=ma.validate.OneOf(ON_BUDGET),
        metadata={"description": "What a call that would pass the budget does"},
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

    @require_scopes(sc.WORKFLOWS_WRITE)
    @blp.arguments(WorkflowDocumentSchema)
    @blp.response(201, WorkflowSchema)
    @blp.alt_response(200, schema=WorkflowSchema, description="That exact body was already stored")
    def post(self, document: dict[str, Any]) -> Stored:
        """Store a workflow

        Checks the document (schema, graph, actions, queues, expressions), then stores it: 201;
        200 when this exact body is stored; 409 when its version is stored with another body.
        """
        workflow = _checked(document)
        with session_scope() as session:
            row, created = save_workflow(session=session, workflow=workflow, document=document)
            if is_latest(session=session, row=row):
                sync_declared(session=session, workflow=workflow)
        return row, 201 if created else 200, _location(row)


@blp.route("/validate")
class WorkflowValidation(MethodView):
    @require_scopes(sc.WORKFLOWS_READ)
    @blp.arguments(WorkflowDocumentSchema)
    @blp.response(200, WorkflowValidSchema)
    def post(self, document: dict[str, Any]) -> dict[str, Any]:
        """Validate a workflow

        The same checks as storing it, so a client can lint before pushing; stores nothing.
        """
        flow = _checked(document)
        return {"valid": True, "name": flow.name, "version": flow.version, "steps": len(flow.steps)}


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

    @require_scopes(sc.WORKFLOWS_WRITE)
    @blp.arguments(WorkflowDocumentSchema)
    @blp.response(201, WorkflowSchema)
    def put(self, document: dict[str, Any], name: str) -> Stored:
        """Store a new version

        The body's `name` must be the URL's and its `version` greater than every stored one
        (else 409), so a version once run never changes under its runs.
        """
        workflow = _checked(document, url_name=name)
        with session_scope() as session:
            require_newer(
                session=session,
                model=WorkflowDefinition,
                kind="workflow",
                name=name,
                version=workflow.version,
            )
            row, _ = save_workflow(session=session, workflow=workflow, document=document)
            sync_declared(session=session, workflow=workflow)
        return row, 201, _location(row)

    @require_scopes(sc.WORKFLOWS_WRITE)
    @blp.arguments(WorkflowQuerySchema, location="query")
    @blp.response(200, WorkflowDeletedSchema)
    def delete(self, query: dict[str, Any], name: str) -> dict[str, Any]:
        """Delete a workflow

        The version named by `?version=`, or every version; refused with 409 (deleting
        nothing) while any run references one, since runs keep their definition. The
        schedules it declared follow the latest version left (none: they are deleted).
        """
        with session_scope() as session:
            rows = _deletable(session, name, query.get("version"))
            for row in rows:
                session.delete(row)
            session.flush()
            resync_declared(session=session, workflow=name)
        return {"name": name, "versions": sorted(row.version for row in rows)}


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
        answers 202 at once with the run id (state `queued` when the workflow's concurrency
        key is at its limit: it starts when a run of that key ends). A repeated
        `Idempotency-Key` returns the existing run with 200 and starts nothing.
        """
        with session_scope() as session:
            run, outbox_ids, created = start_run(
                session=session,
                settings=get_settings(),
                workflow_name=name,
                inputs=body["inputs"],
                version=body["version"],
                idempotency_key=idempotency_key,
                created_by=current_principal().subject,
                priority=body["priority"],
                budget=budget_of(body["budget"], body["on_budget"]),
            )
        publish(outbox_ids)
        location = f"/api/v1/runs/{run.id}"
        result = {
            "id": run.id,
            "state": run.state,
            "workflow_name": run.workflow_name,
            "workflow_version": run.workflow_version,
            "links": {"self": location},
        }
        return result, 202 if created else 200, {"Location": location}


def _checked(document: dict[str, Any], url_name: str | None = None) -> WorkflowDef:
    """Parse and engine-validate; a DefinitionError keeps only field paths (no `file` origin)."""
    name = document.get("name")
    if url_name is not None and name != url_name:
        raise ValidationFailed(
            f"the body's name {name!r} is not the URL's {url_name!r}",
            fields={"name": [f"must be {url_name!r}, as in the URL"]},
        )
    origin = f"workflow {name!r}" if isinstance(name, str) else "workflow"
    try:
        workflow = parse_workflow(document, origin=origin)
        validate_workflow(workflow, origin, known_tools(get_settings()))
    except DefinitionError as exc:
        exc.fields.pop("file", None)
        raise
    return workflow


def _location(row: WorkflowDefinition) -> dict[str, str]:
    return {"Location": f"/api/v1/workflows/{row.name}?version={row.version}"}


def _deletable(session: Session, name: str, version: int | None) -> list[WorkflowDefinition]:
    """The versions to delete, locked first so no run can start on one before the count."""
    query = select(WorkflowDefinition).where(WorkflowDefinition.name == name)
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    rows = list(session.scalars(query.order_by(WorkflowDefinition.version).with_for_update()))
    if not rows:
        get_workflow(session=session, name=name, version=version)  # raises NotFound naming it
    by_id = {row.id: row.version for row in rows}
    wid = Run.workflow_id
    counts = session.execute(select(wid, func.count()).where(wid.in_(by_id)).group_by(wid))
    busy = sorted((by_id[row_id], int(n)) for row_id, n in counts)
    if busy:
        problems = [f"version {v} is referenced by {n} run(s)" for v, n in busy]
        raise Conflict(
            f"workflow {name!r}: {'; '.join(problems)}; delete those runs first",
            fields={"version": problems},
        )
    return rows

"""`/api/v1/runs/<id>/lineage`: which step outputs fed which step inputs, and which documents
a retrieval-augmented answer cited, as a graph (its own blueprint beside `runs`)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.observability.lineage import lineage
from agent33.security import scopes as sc
from web.auth import require_scopes
from web.extensions import Blueprint

blp = Blueprint("lineage", __name__, url_prefix="/api/v1/runs", description="Run lineage")

NODE_KINDS = ("input", "step", "output", "document")
EDGE_KINDS = ("data", "depends_on", "fallback", "cited")


class LineageNodeSchema(ma.Schema):
    id = ma.fields.String(
        metadata={"description": "`step:<id>`, `input:<name>`, `output:<name>`, `document:<id>`"}
    )
    kind = ma.fields.String(validate=ma.validate.OneOf(NODE_KINDS))
    label = ma.fields.String()
    action = ma.fields.String(metadata={"description": "Steps: the step's action"})
    state = ma.fields.String(
        allow_none=True, metadata={"description": "Steps: the state in this run (None: no row)"}
    )
    document_id = ma.fields.String(metadata={"description": "Documents: the memory document"})
    key = ma.fields.String(allow_none=True)
    source = ma.fields.String(allow_none=True)


class LineageEdgeSchema(ma.Schema):
    class Meta:
        ordered = True

    source = ma.fields.String(metadata={"description": "The node the data comes from"})
    target = ma.fields.String(metadata={"description": "The node it feeds"})
    kind = ma.fields.String(
        validate=ma.validate.OneOf(EDGE_KINDS),
        metadata={
            "description": "`data`: a template of the target reads the source; `depends_on`: "
            "ordering only; `fallback`: the target runs if the source fails; `cited`: the "
            "target's answer cited the source document"
        },
    )
    from_ = ma.fields.String(
        data_key="from",
        attribute="from",
        metadata={"description": "Data: what is read, e.g. `steps.prepare.output.release`"},
    )
    to = ma.fields.String(metadata={"description": "Data: where, e.g. `with.prompt`"})
    chunk_id = ma.fields.Integer(allow_none=True, metadata={"description": "Cited: the chunk"})
    index = ma.fields.Integer(allow_none=True, metadata={"description": "Cited: the `[n]`"})
    score = ma.fields.Float(allow_none=True)
    child = ma.fields.String(metadata={"description": "Cited by this child of a fan-out step"})


class LineageSchema(ma.Schema):
    run_id = ma.fields.UUID()
    workflow = ma.fields.String()
    version = ma.fields.Integer()
    state = ma.fields.String()
    nodes = ma.fields.List(ma.fields.Nested(LineageNodeSchema))
    edges = ma.fields.List(ma.fields.Nested(LineageEdgeSchema))


@blp.route("/<uuid:run_id>/lineage")
class RunLineage(MethodView):
    @require_scopes(sc.RUNS_READ)
    @blp.response(200, LineageSchema)
    def get(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Get a run's lineage

        A graph of the run: its inputs, steps (with their states), outputs and the documents
        its answers cited as nodes; as edges, which step outputs and inputs each step's
        templates read, the ordering, and the citations. 404 for an unknown run.
        """
        with session_scope() as session:
            return lineage(session=session, run_id=run_id)

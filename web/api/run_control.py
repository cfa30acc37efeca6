"""`/api/v1/runs/<id>/rerun|pin|unpin`: rerun a finished run from a step; keep a run forever."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.engine.rerun import rerun_run
from agent33.engine.retention import set_pinned
from agent33.security import scopes as sc
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, get_settings
from web.outbox import publish

blp = Blueprint(
    "run_control",
    __name__,
    url_prefix="/api/v1/runs",
    description="Rerun a finished run from a step; pin runs against retention",
)


class RerunSchema(ma.Schema):
    from_ = ma.fields.String(
        data_key="from",
        required=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={
            "description": "Step to rerun from: `summarise`, a map child `fan[2]`, or `sub/inner`"
            " for a step inside the sub-run of sub_workflow step `sub`"
        },
    )
    inputs = ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=None,
        allow_none=True,
        metadata={"description": "Replace these keys of the original run's inputs"},
    )


class RerunCreatedSchema(ma.Schema):
    id = ma.fields.UUID(metadata={"description": "The new run"})
    state = ma.fields.String()
    rerun_of = ma.fields.UUID()
    from_ = ma.fields.String(data_key="from")
    copied = ma.fields.List(
        ma.fields.String(), metadata={"description": "Steps whose outcome was copied, not rerun"}
    )


class PinnedSchema(ma.Schema):
    id = ma.fields.UUID()
    pinned = ma.fields.Boolean()


@blp.route("/<uuid:run_id>/rerun")
class RunRerun(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.arguments(RerunSchema)
    @blp.response(202, RerunCreatedSchema)
    def post(self, body: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
        """Rerun from a step

        Creates a new run of the same workflow version: steps not downstream of `from` keep
        the original's outputs (copied, not executed), `from` and everything after it run
        again. Works on succeeded, failed and cancelled runs; 409 while the run is still
        going, 422 when `from` names no step of the run.
        """
        with session_scope() as session:
            result = rerun_run(
                session=session,
                settings=get_settings(),
                run_id=run_id,
                from_step=body["from_"],
                inputs=body["inputs"],
                by=current_principal().subject,
            )
        publish(result.outbox_ids)
        return {
            "id": result.run_id,
            "state": result.state,
            "rerun_of": run_id,
            "from_": body["from_"],
            "copied": result.copied,
        }


def _pin(run_id: uuid.UUID, pinned: bool) -> dict[str, Any]:
    with session_scope() as session:
        set_pinned(session=session, run_id=run_id, pinned=pinned)
    return {"id": run_id, "pinned": pinned}


@blp.route("/<uuid:run_id>/pin")
class RunPin(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.response(200, PinnedSchema)
    def post(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Pin a run

        Retention never deletes a pinned run (nor its sub-runs); 404 when absent.
        """
        return _pin(run_id, True)


@blp.route("/<uuid:run_id>/unpin")
class RunUnpin(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.response(200, PinnedSchema)
    def post(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Unpin a run

        The run is purged again once it is older than its retention; 404 when absent.
        """
        return _pin(run_id, False)

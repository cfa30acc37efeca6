"""`/api/v1/runs/<id>/replay` and `/diff`: re-execute a run from its recorded calls and compare
the two runs' step outputs; `/budget`: raise a run's budget (and wake steps paused on it)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.definitions.schemas import BudgetSchema
from agent33.engine.budget_pause import raise_budget
from agent33.engine.run_replay import diff, start_replay
from agent33.security import scopes as sc
from tasks.dispatch import revoke
from web.auth import current_principal, require_scopes
from web.extensions import BIGINT_MAX, Blueprint, get_settings
from web.outbox import publish

blp = Blueprint(
    "run_replay",
    __name__,
    url_prefix="/api/v1/runs",
    description="Replaying recorded runs and raising budgets",
)


class ReplayRequestSchema(ma.Schema):
    strict = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Fail a step whose call was not recorded (else it goes live)"},
    )
    version = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=1, max=BIGINT_MAX),
        metadata={"description": "Replay on this stored workflow version (default: the run's)"},
    )


class ReplayCreatedSchema(ma.Schema):
    id = ma.fields.UUID(metadata={"description": "The replay run"})
    state = ma.fields.String()
    replay_of = ma.fields.UUID()
    strict = ma.fields.Boolean()
    links = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


class DifferenceSchema(ma.Schema):
    step_id = ma.fields.String()
    field = ma.fields.String(metadata={"description": "`state` or `output`"})
    original = ma.fields.Raw(allow_none=True)
    replay = ma.fields.Raw(allow_none=True)


class DiffSchema(ma.Schema):
    run_id = ma.fields.UUID()
    source_run_id = ma.fields.UUID()
    strict = ma.fields.Boolean()
    state = ma.fields.String()
    source_state = ma.fields.String()
    error = ma.fields.Dict(allow_none=True)
    differences = ma.fields.List(ma.fields.Nested(DifferenceSchema))


@blp.route("/<uuid:run_id>/replay")
class RunReplay(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.arguments(ReplayRequestSchema)
    @blp.response(202, ReplayCreatedSchema)
    def post(self, body: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
        """Replay a run

        Starts a new run of the same workflow version and inputs whose model and tool calls
        are answered from this run's recording (no request goes out); `strict` fails a step
        that makes a call the recording lacks. 404 when the run is absent.
        """
        with session_scope() as session:
            run, outbox_ids = start_replay(
                session=session,
                settings=get_settings(),
                run_id=run_id,
                strict=body["strict"],
                created_by=current_principal().subject,
                workflow_version=body["version"],
            )
            created = {"id": run.id, "state": run.state}
        publish(outbox_ids)
        return {
            **created,
            "replay_of": run_id,
            "strict": body["strict"],
            "links": {
                "self": f"/api/v1/runs/{created['id']}",
                "diff": f"/api/v1/runs/{created['id']}/diff",
            },
        }


@blp.route("/<uuid:run_id>/diff")
class RunDiff(MethodView):
    @require_scopes(sc.RUNS_READ)
    @blp.response(200, DiffSchema)
    def get(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Diff a replay against its original

        Each step (map children included) whose state or output differs, timings
        (`latency_ms`, `duration_ms`) left out; 404 when the run is not a replay.
        """
        with session_scope() as session:
            return diff(session=session, run_id=run_id)


class BudgetRaisedSchema(ma.Schema):
    id = ma.fields.UUID()
    state = ma.fields.String(metadata={"description": "The run's state after the change"})


@blp.route("/<uuid:run_id>/budget")
class RunBudget(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.arguments(BudgetSchema)
    @blp.response(200, BudgetRaisedSchema)
    def post(self, body: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
        """Raise a run's budget

        Sets new `tokens` and/or `cost` limits on the budget the run spends (its root run's)
        and queues again every step paused on it (`on_budget: pause`); 404 when the run has
        no budget.
        """
        with session_scope() as session:
            result = raise_budget(
                session=session,
                run_id=run_id,
                tokens=body["tokens"],
                cost=body["cost"],
                by=current_principal().subject,
            )
        publish(result.outbox_ids)
        revoke(result.revoke_task_ids)
        return {"id": run_id, "state": result.state}

"""`/api/v1/runs`: page through runs, read one with its steps and events, and control it."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.engine.lifecycle import ControlResult, approve_step, cancel_run, resume_run
from agent33.engine.service import get_run, list_events, list_runs
from agent33.engine.states import RunState
from agent33.engine.usage import run_usage
from agent33.security import scopes as sc
from tasks.dispatch import revoke
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, page, page_schema
from web.outbox import publish

COMMENT_MAX = 2000

blp = Blueprint("runs", __name__, url_prefix="/api/v1/runs", description="Workflow runs")


class RunQuerySchema(PageQuerySchema):
    workflow = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200))
    state = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([s.value for s in RunState])
    )


class RunSummarySchema(ma.Schema):
    id = ma.fields.UUID()
    workflow = ma.fields.String(attribute="workflow_name")
    version = ma.fields.Integer(attribute="workflow_version")
    state = ma.fields.String()
    inputs = ma.fields.Dict()
    outputs = ma.fields.Dict(allow_none=True)
    error = ma.fields.Dict(allow_none=True)
    created_by = ma.fields.String(allow_none=True)
    trigger = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": "What started the run when no caller did (schedule, sensor, event)"
        },
    )
    rerun_of = ma.fields.UUID(
        allow_none=True, metadata={"description": "The run this one reruns from a step"}
    )
    pinned = ma.fields.Boolean(metadata={"description": "Kept by retention whatever its age"})
    priority = ma.fields.Integer(metadata={"description": "0 (default) to 9 (most urgent)"})
    concurrency_key = ma.fields.String(
        allow_none=True,
        metadata={"description": "The workflow's concurrency key for this run (`queued`: waits)"},
    )
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


class StepSchema(ma.Schema):
    step_id = ma.fields.String()
    action = ma.fields.String()
    state = ma.fields.String()
    attempt = ma.fields.Integer()
    inputs = ma.fields.Dict(allow_none=True)
    output = ma.fields.Raw(allow_none=True, metadata={"description": "Any JSON value"})
    error = ma.fields.Dict(allow_none=True)
    queue = ma.fields.String()
    worker = ma.fields.String(allow_none=True)
    queued_at = ma.fields.DateTime(allow_none=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    copied_from = ma.fields.UUID(
        allow_none=True,
        metadata={"description": "In a rerun: the run this step's outcome was copied from"},
    )


class EventSchema(ma.Schema):
    kind = ma.fields.String()
    step_id = ma.fields.String(allow_none=True)
    from_state = ma.fields.String(allow_none=True)
    to_state = ma.fields.String(allow_none=True)
    message = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()


class StepUsageSchema(ma.Schema):
    prompt_tokens = ma.fields.Integer()
    completion_tokens = ma.fields.Integer()
    total_tokens = ma.fields.Integer()
    cost = ma.fields.Float(metadata={"description": "At AGENT33_MODEL_PRICES (per 1K tokens)"})
    latency_ms = ma.fields.Float(metadata={"description": "Time spent in model calls"})
    model_calls = ma.fields.Integer()


class AwaitingSchema(ma.Schema):
    step_id = ma.fields.String()
    prompt = ma.fields.String()
    tool_call = ma.fields.Dict(
        allow_none=True,
        metadata={"description": "The agent's proposed tool call: {id, name, arguments}"},
    )


class BudgetStateSchema(ma.Schema):
    tokens = ma.fields.Integer(allow_none=True)
    cost = ma.fields.Float(allow_none=True)
    on_budget = ma.fields.String()
    tokens_used = ma.fields.Integer()
    cost_used = ma.fields.Float()
    tokens_reserved = ma.fields.Integer(metadata={"description": "Used + held by calls out now"})


class UsageSchema(StepUsageSchema):
    steps = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(StepUsageSchema),
        metadata={"description": "The same per step (map children as `step[key]`)"},
    )
    budget = ma.fields.Nested(BudgetStateSchema, allow_none=True)


class RunDetailSchema(RunSummarySchema):
    awaiting = ma.fields.List(
        ma.fields.Nested(AwaitingSchema),
        metadata={"description": "Steps awaiting an approval (`POST .../approve` answers)"},
    )
    steps = ma.fields.List(ma.fields.Nested(StepSchema))
    events = ma.fields.List(ma.fields.Nested(EventSchema))
    usage = ma.fields.Nested(
        UsageSchema, metadata={"description": "Model usage of the run and of each step"}
    )


RunPageSchema = page_schema(RunSummarySchema, "Run")


class RunControlledSchema(ma.Schema):
    id = ma.fields.UUID()
    state = ma.fields.String(metadata={"description": "The run's state after the action"})


class ApprovalSchema(ma.Schema):
    step_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    approved = ma.fields.Boolean(load_default=True, metadata={"description": "false rejects"})
    comment = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(max=COMMENT_MAX)
    )


RUN_ATTRIBUTES = (
    "id",
    "workflow_name",
    "workflow_version",
    "state",
    "inputs",
    "outputs",
    "error",
    "created_by",
    "trigger",
    "rerun_of",
    "pinned",
    "priority",
    "concurrency_key",
    "created_at",
    "started_at",
    "finished_at",
)


@blp.route("")
class Runs(MethodView):
    @require_scopes(sc.RUNS_READ)
    @blp.arguments(RunQuerySchema, location="query")
    @blp.response(200, RunPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List runs

        Newest first, filtered by `workflow` and `state`, paged by `limit` (1-200) and `offset`.
        """
        with session_scope() as session:
            runs, total = list_runs(
                session=session,
                workflow=query["workflow"],
                state=query["state"],
                limit=query["limit"],
                offset=query["offset"],
            )
        return page(runs, total, query)


@blp.route("/<uuid:run_id>")
class RunById(MethodView):
    @require_scopes(sc.RUNS_READ)
    @blp.response(200, RunDetailSchema)
    def get(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Get a run

        The run with every step's state, attempt, I/O and timing, and the event log that
        explains each transition; 404 when absent.
        """
        with session_scope() as session:
            run = get_run(session=session, run_id=run_id)
            events = list_events(session=session, run_id=run_id)
            usage = run_usage(session=session, run_id=run_id)
        # Dumped after the commit: rows stay loaded (expire_on_commit=False, steps eager-loaded).
        return {
            **{name: getattr(run, name) for name in RUN_ATTRIBUTES},
            "awaiting": awaiting(run.steps),
            "steps": run.steps,
            "events": events,
            "usage": usage,
        }


def awaiting(steps: Any) -> list[dict[str, Any]]:
    """What the run waits for from a person: each step's prompt and proposed tool call."""
    found = []
    for step in steps:
        if step.waiting_for == "approval":
            output = step.output if isinstance(step.output, dict) else {}
            found.append(
                {
                    "step_id": step.step_id,
                    "prompt": str(output.get("prompt", "")),
                    "tool_call": output.get("tool_call"),
                }
            )
    return found


@blp.route("/<uuid:run_id>/cancel")
class RunCancel(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.response(200, RunControlledSchema)
    def post(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Cancel a run

        Unfinished steps become `cancelled` and running ones are terminated; 409 when the run
        already finished.
        """
        with session_scope() as session:
            result = cancel_run(session=session, run_id=run_id, by=current_principal().subject)
        return _after_commit(run_id, result)


@blp.route("/<uuid:run_id>/resume")
class RunResume(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.response(202, RunControlledSchema)
    def post(self, run_id: uuid.UUID) -> dict[str, Any]:
        """Resume a run

        Re-plans a failed or cancelled run from its checkpoints: steps that succeeded keep
        their outputs, the rest run again; 409 for any other state.
        """
        with session_scope() as session:
            result = resume_run(session=session, run_id=run_id, by=current_principal().subject)
        return _after_commit(run_id, result)


@blp.route("/<uuid:run_id>/approve")
class RunApprove(MethodView):
    @require_scopes(sc.RUNS_WRITE)
    @blp.arguments(ApprovalSchema)
    @blp.response(200, RunControlledSchema)
    def post(self, body: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
        """Approve or reject a step

        Answers a `wait` step awaiting approval (`approved: false` fails it), or an agent
        step parked on a proposed tool call (approved: the tool runs; rejected: the model is
        told so; either way the conversation continues); 409 when the step is not awaiting one.
        """
        with session_scope() as session:
            result = approve_step(
                session=session,
                run_id=run_id,
                step_id=body["step_id"],
                approved=body["approved"],
                comment=body["comment"],
                by=current_principal().subject,
            )
        return _after_commit(run_id, result)


def _after_commit(run_id: uuid.UUID, result: ControlResult) -> dict[str, Any]:
    """Publish and revoke only once the new state is durable; failures are left to the relay."""
    publish(result.outbox_ids)
    revoke(result.revoke_task_ids)
    return {"id": run_id, "state": result.state}

"""The dashboard's pages (read-only): runs, one run, workflows, agents, schedules, dead letters.

Each page reads through the same library functions as the matching API endpoint and declares
the same scope; query arguments are checked with the API's own schemas.
"""

from __future__ import annotations

import uuid
from typing import Any

import flask
import marshmallow as ma
from werkzeug.wrappers import Response as WerkzeugResponse

from agent33.automation import dead_letters
from agent33.automation.schedule_store import list_schedules
from agent33.db import session_scope
from agent33.db.models import AgentDefinition, WorkflowDefinition
from agent33.definitions.agents import list_agents
from agent33.definitions.registry import definition_of, get_workflow, list_workflows
from agent33.definitions.versions import find_version, version_numbers
from agent33.engine.service import get_run, list_runs
from agent33.engine.states import RUN_TERMINAL, RunState
from agent33.engine.usage import run_usage
from agent33.security import scopes as sc
from web.api.runs import RunQuerySchema
from web.dashboard import dag, forms, live, runview
from web.dashboard.blueprint import blp
from web.dashboard.session import needs

PAGE_SIZE = 25
VERSION = ma.fields.Integer(validate=ma.validate.Range(min=1))


@blp.get("/")
@needs(sc.RUNS_READ)
def index() -> WerkzeugResponse:
    return flask.redirect(flask.url_for("dashboard.runs"))


@blp.get("/runs")
@needs(sc.RUNS_READ)
def runs() -> str | tuple[str, int]:
    """Runs, newest first, filtered like `GET /api/v1/runs` (bad filters: the API's messages)."""
    args = {k: v for k, v in flask.request.args.items() if v != ""}
    args.setdefault("limit", str(PAGE_SIZE))
    try:
        query = RunQuerySchema().load(args)
    except ma.ValidationError as error:
        return flask.render_template(
            "dashboard/runs.html",
            runs=[],
            total=0,
            query=args,
            errors=error.messages,
            states=[s.value for s in RunState],
            workflows=[],
        ), 400
    with session_scope() as session:
        rows, total = list_runs(
            session=session,
            workflow=query["workflow"],
            state=query["state"],
            limit=query["limit"],
            offset=query["offset"],
        )
        names = [row.name for row in list_workflows(session=session)]
    return flask.render_template(
        "dashboard/runs.html",
        runs=rows,
        total=total,
        query=query,
        errors={},
        states=[s.value for s in RunState],
        workflows=names,
    )


@blp.get("/runs/<uuid:run_id>")
@needs(sc.RUNS_READ)
def run(run_id: uuid.UUID) -> str:
    """A run: its DAG, each step's details and the event log; the page then follows it live."""
    with session_scope() as session:
        row = get_run(session=session, run_id=run_id)
        events = runview.events_of(session=session, run_id=run_id)
        steps = sorted(row.steps, key=lambda s: s.position)
        views = [runview.step_view(step) for step in steps]
        usage = run_usage(session=session, run_id=run_id)
    return flask.render_template(
        "dashboard/run.html",
        run=row,
        steps=views,
        states={view["step_id"]: view["state"] for view in views},
        events=events,
        usage=usage,
        layout=dag.layout(runview.shapes(row)),
        terminal=RunState(row.state) in RUN_TERMINAL,
    )


@blp.get("/runs/<uuid:run_id>/live")
@needs(sc.RUNS_READ)
def run_live(run_id: uuid.UUID) -> WerkzeugResponse:
    """Server-Sent Events: the run's snapshot on every change until it ends."""
    with session_scope() as session:
        get_run(session=session, run_id=run_id)  # 404 now, not inside the stream
    response = flask.Response(live.events(run_id), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy must not hold the events back
    return response


def _version() -> int | None:
    raw = flask.request.args.get("version")
    if not raw:
        return None
    try:
        return int(VERSION.deserialize(raw))
    except ma.ValidationError as error:
        flask.abort(400, description=f"version: {' '.join(map(str, error.messages))}")


@blp.get("/workflows")
@needs(sc.WORKFLOWS_READ)
def workflows() -> str:
    with session_scope() as session:
        rows = list_workflows(session=session)
    return flask.render_template("dashboard/workflows.html", workflows=rows)


def workflow_page(
    name: str,
    version: int | None,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
) -> str:
    """The workflow, its versions, its DAG and the start form (with a failed submission's
    values and errors when re-shown)."""
    with session_scope() as session:
        row = get_workflow(session=session, name=name, version=version)
        versions = version_numbers(session=session, model=WorkflowDefinition, name=name)
        definition = definition_of(row)
    shapes = [dag.StepShape(s.id, s.action, s.depends_on) for s in definition.steps]
    fields = forms.fields_for(definition.inputs)
    return flask.render_template(
        "dashboard/workflow.html",
        workflow=row,
        definition=definition,
        versions=versions,
        layout=dag.layout(shapes),
        states={},
        fields=fields,
        values=values or {},
        errors=forms.errors_by_field(fields, errors or {}),
    )


@blp.get("/workflows/<string:name>")
@needs(sc.WORKFLOWS_READ)
def workflow(name: str) -> str:
    return workflow_page(name, _version())


@blp.get("/agents")
@needs(sc.AGENTS_READ)
def agents() -> str:
    with session_scope() as session:
        rows = list_agents(session=session)
    return flask.render_template("dashboard/agents.html", agents=rows)


@blp.get("/agents/<string:name>")
@needs(sc.AGENTS_READ)
def agent(name: str) -> str:
    with session_scope() as session:
        row = find_version(
            session=session, model=AgentDefinition, kind="agent", name=name, version=_version()
        )
        versions = version_numbers(session=session, model=AgentDefinition, name=name)
    return flask.render_template("dashboard/agent.html", agent=row, versions=versions)


@blp.get("/schedules")
@needs(sc.SCHEDULES_READ)
def schedules() -> str:
    with session_scope() as session:
        rows = list_schedules(session=session)
    return flask.render_template("dashboard/schedules.html", schedules=rows)


@blp.get("/dead-letters")
@needs(sc.DEADLETTERS_READ)
def deadletters() -> str:
    offset = flask.request.args.get("offset", type=int) or 0
    with session_scope() as session:
        rows, total = dead_letters.list_page(
            session=session, kind=None, limit=PAGE_SIZE, offset=max(offset, 0)
        )
    return flask.render_template(
        "dashboard/deadletters.html", letters=rows, total=total, offset=offset
    )

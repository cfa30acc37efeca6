"""The dashboard's state-changing requests: log in and out, start a run, approve or reject a
waiting step, cancel and resume. Each is a CSRF-checked POST that calls the same library
functions as the API endpoint it mirrors, under the same scope, then publishes after the commit.
"""

from __future__ import annotations

import uuid
from typing import Any

import flask
import marshmallow as ma
from werkzeug.wrappers import Response as WerkzeugResponse

from agent33.db import session_scope
from agent33.definitions.registry import definition_of, get_workflow
from agent33.engine.lifecycle import ControlResult, approve_step, cancel_run, resume_run
from agent33.engine.service import start_run
from agent33.errors import Agent33Error, Unauthorized, ValidationFailed
from agent33.security import scopes as sc
from tasks.dispatch import revoke
from web.api.runs import ApprovalSchema
from web.auth import current_principal
from web.dashboard import forms, session
from web.dashboard.blueprint import blp
from web.dashboard.views import workflow_page
from web.extensions import get_settings
from web.outbox import publish


def _safe_next(target: str | None) -> str:
    """Only a path on this site: `next=//evil.example` must not send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return flask.url_for("dashboard.runs")


@blp.route("/login", methods=["GET", "POST"])
@session.open_view
def login() -> Any:
    """Log in with a username and password, an API key, or an access token."""
    if flask.request.method == "GET":
        return flask.render_template("dashboard/login.html", error=None)
    form = flask.request.form
    username = form.get("username", "").strip()
    password = form.get("password", "")
    api_key = form.get("api_key", "").strip()
    token = form.get("token", "").strip()
    if not api_key and not token and not (username and password):
        message = "give a username and password, an API key or an access token"
        return flask.render_template("dashboard/login.html", error=message), 400
    try:
        session.log_in(username, password, api_key, token)
    except Unauthorized as error:
        return flask.render_template("dashboard/login.html", error=error.message), 401
    return flask.redirect(_safe_next(flask.request.args.get("next")))


@blp.post("/logout")
@session.open_view
def logout() -> WerkzeugResponse:
    session.log_out()
    return flask.redirect(flask.url_for("dashboard.login"))


@blp.post("/workflows/<string:name>/runs")
@session.needs(sc.RUNS_WRITE)
def start(name: str) -> Any:
    """Start a run from the form; bad input re-shows the form with the API's field errors."""
    raw_version = flask.request.args.get("version")
    version = int(raw_version) if raw_version and raw_version.isdigit() else None
    values = flask.request.form.to_dict()
    try:
        with session_scope() as db:
            definition = definition_of(get_workflow(session=db, name=name, version=version))
        inputs = forms.read(forms.fields_for(definition.inputs), values)
        with session_scope() as db:
            run, outbox_ids, _ = start_run(
                session=db,
                settings=get_settings(),
                workflow_name=name,
                inputs=inputs,
                version=version,
                created_by=current_principal().subject,
            )
    except ValidationFailed as error:
        page = workflow_page(name, version, values=values, errors=error.fields)
        return page, error.http_status
    publish(outbox_ids)
    return flask.redirect(flask.url_for("dashboard.run", run_id=run.id))


def _answer(run_id: uuid.UUID, message: str, category: str, status: int) -> Any:
    """The run page again with the message flashed; the page's script (which posts without
    leaving the page, so the live view keeps running) asks for JSON instead."""
    if flask.request.accept_mimetypes.best == "application/json":
        return flask.jsonify({"message": message, "ok": category == "ok"}), status
    flask.flash(message, category)
    return flask.redirect(flask.url_for("dashboard.run", run_id=run_id))


def _after(run_id: uuid.UUID, result: ControlResult, done: str) -> Any:
    """Publish and revoke once the change is committed, as the API does."""
    publish(result.outbox_ids)
    revoke(result.revoke_task_ids)
    return _answer(run_id, done, "ok", 200)


def _refused(run_id: uuid.UUID, error: Agent33Error) -> Any:
    return _answer(run_id, error.message, "error", error.http_status)


@blp.post("/runs/<uuid:run_id>/approve")
@session.needs(sc.RUNS_WRITE)
def approve(run_id: uuid.UUID) -> Any:
    """Approve (`approved=true`) or reject a step waiting for approval."""
    try:
        body = ApprovalSchema().load(
            {k: v for k, v in flask.request.form.items() if k != "csrf_token" and v != ""}
        )
        with session_scope() as db:
            result = approve_step(
                session=db,
                run_id=run_id,
                step_id=body["step_id"],
                approved=body["approved"],
                comment=body["comment"],
                by=current_principal().subject,
            )
    except ma.ValidationError as error:
        fields = error.messages if isinstance(error.messages, dict) else {}
        detail = "; ".join(f"{key}: {' '.join(map(str, msgs))}" for key, msgs in fields.items())
        return _refused(run_id, ValidationFailed(detail or "invalid approval"))
    except Agent33Error as error:
        return _refused(run_id, error)
    verb = "approved" if body["approved"] else "rejected"
    return _after(run_id, result, f"step {body['step_id']} {verb}")


@blp.post("/runs/<uuid:run_id>/cancel")
@session.needs(sc.RUNS_WRITE)
def cancel(run_id: uuid.UUID) -> Any:
    try:
        with session_scope() as db:
            result = cancel_run(session=db, run_id=run_id, by=current_principal().subject)
    except Agent33Error as error:
        return _refused(run_id, error)
    return _after(run_id, result, "run cancelled")


@blp.post("/runs/<uuid:run_id>/resume")
@session.needs(sc.RUNS_WRITE)
def resume(run_id: uuid.UUID) -> Any:
    try:
        with session_scope() as db:
            result = resume_run(session=db, run_id=run_id, by=current_principal().subject)
    except Agent33Error as error:
        return _refused(run_id, error)
    return _after(run_id, result, "run resumed")

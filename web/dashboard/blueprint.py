"""The dashboard blueprint: CSRF and log-in checks before every view, HTML error pages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from agent33.errors import Agent33Error
from agent33.security import scopes
from web.dashboard import csrf, session
from web.errors import CODES, envelope, handle_agent33_error

blp = flask.Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)
blp.before_request(csrf.check)  # first: a forged POST is refused before anything else runs
blp.before_request(session.enforce)


@blp.app_template_filter("pretty")
def pretty(value: Any) -> str:
    """JSON for a <pre> block (step inputs, outputs, errors)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


@blp.app_template_filter("when")
def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


@blp.context_processor
def helpers() -> dict[str, Any]:
    return {
        "csrf_token": csrf.token,
        "may": session.may,
        "principal": flask.g.get("principal"),
        "sc": scopes,
    }


def _page(status: int, title: str, message: str) -> tuple[str, int]:
    return flask.render_template(
        "dashboard/error.html", status=status, title=title, message=message
    ), status


@blp.errorhandler(Agent33Error)
def agent33_error(error: Agent33Error) -> Any:
    """An HTML page; a JSON body (refused by `web.limits` before any view) gets the API's
    JSON envelope, as on every other route."""
    if flask.request.is_json:
        return handle_agent33_error(error)
    return _page(error.http_status, error.code.replace("_", " "), error.message)


@blp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    status = error.code or 500
    message = error.description or error.name
    if flask.request.is_json:
        return envelope(status, CODES.get(status, "error"), message)
    return _page(status, error.name, message)

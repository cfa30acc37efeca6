"""Shared web plumbing: the request parser (bad input is a 400) and settings access."""

from __future__ import annotations

from typing import Any

import flask
import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

from agent33.config import Settings

SETTINGS_KEY = "agent33_settings"


class Agent33Parser(FlaskParser):
    """webargs parser answering 400 (not 422) for invalid input, and 415 for a non-JSON body.

    Stock webargs treats a body sent with another Content-Type as absent, so a JSON body posted
    as text/plain would silently run with defaults; refusing it is safer.
    """

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                abort(415, message="the request body must be JSON (Content-Type: application/json)")
            return core.missing
        return super()._raw_load_json(req)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest Blueprint using `Agent33Parser`; every resource module uses this one."""

    ARGUMENTS_PARSER = Agent33Parser()


def get_settings(app: flask.Flask | None = None) -> Settings:
    """The settings the app was created with."""
    settings = (app or flask.current_app).extensions[SETTINGS_KEY]
    assert isinstance(settings, Settings)
    return settings

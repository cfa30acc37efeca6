"""The web dashboard, served by the API's Flask app under `/`: runs (live), a run's DAG and
steps, workflows and agents with their versions, schedules and dead letters.

Server-rendered Jinja2 pages with one small script (`static/dashboard.js`) and no front-end
build; every action calls the same library functions and checks the same scopes as the API.
"""

from __future__ import annotations

import datetime as dt

import flask

from agent33.config import Settings

SESSION_HOURS = 12


def init_app(app: flask.Flask, settings: Settings) -> None:
    """Register the dashboard and harden the session cookie it logs in with."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
    )
    from web.dashboard import actions, views  # noqa: F401 - they add their routes to `blp`
    from web.dashboard.blueprint import blp

    app.register_blueprint(blp)

"""The Flask app factory: `create_app()` builds the API; `web.wsgi:app` is what gunicorn serves.

Nothing here does I/O: the database engine is created but connects on first use, so gunicorn
workers forked after import never share a pool.
"""

from __future__ import annotations

import flask

import agent33
from agent33 import db
from agent33.config import Settings
from web import auth, dashboard, limits, observability
from web.errors import Api
from web.extensions import SETTINGS_KEY

MAX_BODY_BYTES = 10 * 1024 * 1024

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def create_app(config: Settings | None = None) -> flask.Flask:
    """Build the API app from `config`, or from the environment (joining a running embedded
    system when DATABASE_URL/REDIS_URL are unset)."""
    if config is None:
        from agent33.embedded import resolve_settings

        config = resolve_settings()
    settings = config
    db.configure(settings)

    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Agent33",
        API_VERSION=agent33.__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "Agent-orchestration engine: workflow DAGs on Celery."},
            "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        },
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[SETTINGS_KEY] = settings

    api = Api(app)
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    observability.init_app(app, settings)  # first: refused requests are timed too
    app.before_request(limits.check_body)  # no hook or view parses a refused body
    auth.init_app(app)

    from web.api import register

    register(api)
    dashboard.init_app(app, settings)
    return app

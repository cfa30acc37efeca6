"""gunicorn entry point: `gunicorn -c python:web.gunicorn_conf 'web.wsgi:app'` (settings from
the environment); logs in the configured format (JSON in production)."""

from __future__ import annotations

from agent33.config import load_settings
from agent33.observability.logging import configure_logging
from web import create_app

configure_logging(load_settings())
app = create_app()

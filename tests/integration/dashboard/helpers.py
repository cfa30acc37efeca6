"""Logging the Flask test client into the dashboard the way a browser does (CSRF token included)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The session's CSRF token, read from a page's form like a browser would submit it."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, "the page carries no CSRF token"
    return found.group(1)


def log_in_with_key(client: FlaskClient, headers: dict[str, str]) -> str:
    """Log in with the API key in `headers` (as `make_api_key` returns it); the CSRF token."""
    token = csrf_token(client)
    answer = client.post("/login", data={"api_key": headers["X-API-Key"], "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return csrf_token(client, "/runs")  # rotated at log-in

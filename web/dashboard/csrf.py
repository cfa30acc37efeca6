"""CSRF protection for the dashboard: one random token per session, required on every POST.

The token lives in the (signed, HttpOnly) session cookie and is echoed in each form as a hidden
`csrf_token` field (or an `X-CSRF-Token` header); a state-changing request without the matching
token is refused with 400 before its view runs. SameSite=Lax already keeps other sites' forms
from carrying the cookie; the token also covers same-site pages and older browsers.
"""

from __future__ import annotations

import hmac
import secrets

import flask

SESSION_KEY = "csrf_token"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token() -> str:
    """This session's token, created on first use (templates call it for every form)."""
    current = flask.session.get(SESSION_KEY)
    if not isinstance(current, str) or not current:
        current = secrets.token_urlsafe(32)
        flask.session[SESSION_KEY] = current
    return current


def check() -> None:
    """`before_request`: abort 400 when a state-changing request lacks this session's token."""
    request = flask.request
    if request.method in SAFE_METHODS:
        return
    expected = flask.session.get(SESSION_KEY)
    sent = request.form.get(FORM_FIELD) or request.headers.get(HEADER) or ""
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(sent, expected):
        flask.abort(400, description="missing or invalid CSRF token; reload the page and retry")


def rotate() -> None:
    """A fresh token at login, so a token planted before authentication is worthless after."""
    flask.session[SESSION_KEY] = secrets.token_urlsafe(32)

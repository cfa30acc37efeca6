"""Who is using the dashboard: log in with a user's password, an API key or an access token.

The session cookie keeps only the identity (a username, an API key's id, or an access token's
user, scopes and expiry: never a password, a key or a token), and every request looks its
current scopes up again, so a disabled user or a revoked key is logged out at its next click,
as the API would refuse its token. A view declares the scopes it needs with `needs(...)` (the
API's scope constants); a view that declares nothing is refused, as in `web.auth`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import flask

from agent33.db import session_scope
from agent33.errors import Unauthorized
from agent33.security import audit
from agent33.security.api_keys import active_key_scopes, authenticate_api_key, authenticate_user
from agent33.security.ratelimit import limiter_for
from agent33.security.scopes import missing_scopes
from agent33.security.tokens import decode_token, narrow_scopes, user_scopes
from web import ratelimit
from web.auth import Principal
from web.dashboard import csrf
from web.extensions import get_settings

SESSION_KEY = "dashboard_identity"
NEEDS_ATTR = "_dashboard_scopes"
OPEN = "_dashboard_open"
STATIC = "dashboard.static"

F = TypeVar("F", bound=Callable[..., Any])


def needs(*scopes: str) -> Callable[[F], F]:
    """Declare the scopes a dashboard view needs (all of them, as `web.auth.require_scopes`)."""
    if not scopes:
        raise TypeError("needs() takes at least one scope")

    def decorator(view: F) -> F:
        setattr(view, NEEDS_ATTR, tuple(scopes))
        return view

    return decorator


def open_view(view: F) -> F:
    """Declare a view reachable without logging in (the login page itself)."""
    setattr(view, OPEN, True)
    return view


def log_in(username: str, password: str, api_key: str, token: str = "") -> None:
    """Check the credentials (a password, an API key, or an access token from
    `POST /api/v1/auth/token`) and open the session; raises Unauthorized (audited, counted)."""
    ratelimit.refuse_if_failing()
    try:
        with session_scope() as session:
            if token:
                claims = decode_token(get_settings(), token)
                identity = {
                    "kind": "jwt",
                    "subject": claims["sub"],
                    "scopes": claims["scopes"],
                    "exp": claims["exp"],
                }
                subject = claims["sub"]
                if user_scopes(session=session, subject=subject) is None:
                    raise Unauthorized("access token's user no longer exists or is disabled")
            elif api_key:
                key = authenticate_api_key(session=session, raw=api_key)
                identity = {"kind": "api_key", "key_id": str(key.id), "subject": key.prefix}
                subject = f"api_key:{key.prefix}"
            else:
                user = authenticate_user(session=session, username=username, password=password)
                identity = {"kind": "user", "subject": user.username}
                subject = user.username
            audit.record(
                session=session,
                action="dashboard.login",
                outcome="ok",
                principal=subject,
                ip=ratelimit.client_ip(),
                target=f"{identity['kind']}:{identity['subject']}",
            )
    except Unauthorized:
        ratelimit.count_auth_failure()
        audit.record_now(
            action="dashboard.login_failed",
            outcome="failed",
            principal=username or None,
            ip=ratelimit.client_ip(),
            target="token" if token else "api_key" if api_key else f"user:{username}",
        )
        raise
    flask.session.clear()
    flask.session[SESSION_KEY] = identity
    flask.session.permanent = True
    csrf.rotate()


def log_out() -> None:
    flask.session.clear()


def _principal(identity: Any) -> Principal | None:
    """The identity's principal with its current scopes; None when it is no longer valid."""
    if not isinstance(identity, dict):
        return None
    with session_scope() as session:
        if identity.get("kind") == "user":
            subject = str(identity.get("subject", ""))
            scopes = user_scopes(session=session, subject=subject)
            return None if scopes is None else Principal(subject, tuple(scopes), "jwt")
        if identity.get("kind") == "jwt":  # held to the token's scopes and expiry
            subject = str(identity.get("subject", ""))
            current = user_scopes(session=session, subject=subject)
            if current is None or time.time() >= float(identity.get("exp", 0)):
                return None
            scopes = narrow_scopes(identity.get("scopes") or [], current)
            return Principal(subject, tuple(scopes), "jwt")
        if identity.get("kind") == "api_key":
            try:
                key_id = uuid.UUID(str(identity.get("key_id")))
            except ValueError:
                return None
            scopes = active_key_scopes(session=session, key_id=key_id)
            if scopes is None:
                return None
            subject = f"api_key:{identity.get('subject')}"
            return Principal(subject, tuple(scopes), "api_key", key_id=key_id)
    return None


def enforce() -> flask.typing.ResponseReturnValue | None:
    """`before_request` of the blueprint: log-in redirect, then the view's declared scopes."""
    endpoint = flask.request.endpoint or ""
    view = flask.current_app.view_functions.get(endpoint)
    if view is None or endpoint == STATIC or getattr(view, OPEN, False):
        return None  # the stylesheet and script are public (the login page needs them too)
    principal = _principal(flask.session.get(SESSION_KEY))
    if principal is None:
        flask.session.pop(SESSION_KEY, None)
        target = flask.request.full_path if flask.request.method == "GET" else "/"
        return flask.redirect(flask.url_for("dashboard.login", next=target.rstrip("?")))
    flask.g.principal = principal
    required = getattr(view, NEEDS_ATTR, None)
    if required is None:
        flask.abort(403, description="this page declares no scopes and is denied by default")
    missing = missing_scopes(principal.scopes, required)
    if missing:
        _audit_denial(principal, missing)
        flask.abort(403, description=f"missing scope {', '.join(missing)}")
    return None


def _audit_denial(principal: Principal, missing: list[str]) -> None:
    """Audited as the API audits its 403s (`auth.denied`, a few rows per caller and minute)."""
    request = flask.request
    audit.record_now_bounded(
        client=limiter_for(get_settings()).client,
        source=f"principal:{principal.subject}",
        action="auth.denied",
        outcome="denied",
        principal=principal.subject,
        ip=ratelimit.client_ip(),
        target=f"{request.method} {request.path}",
        details={
            "status": 403,
            "reason": f"missing scope {', '.join(missing)}",
            "method": request.method,
            "path": request.path,
            "missing_scopes": missing,
        },
    )


def may(*scopes: str) -> bool:
    """Whether the current user holds the scopes (templates hide buttons it could not use)."""
    principal = flask.g.get("principal")
    return isinstance(principal, Principal) and not missing_scopes(principal.scopes, scopes)

"""Authentication, rate limiting and default-deny authorisation for every `/api/v1` route.

A view declares what it needs with `require_scopes` (one or more scopes) or, for "any
authenticated caller", the explicit `require_authenticated`; a view that declares nothing
answers 403 to everyone, so a forgotten decorator can never open an endpoint. Every 401/403
this hook answers is written to the audit log (`auth.denied`), a few rows per source and minute
(`audit.record_now_bounded`), so a flood of bad credentials cannot fill the table; failed
authentications also spend a per-IP budget (`ratelimit.refuse_if_failing`). A bearer token is
held against its user's current state (deleted, disabled, scopes narrowed), looked up at most
every `AGENT33_TOKEN_RECHECK_SECONDS` per process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import flask
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.errors import Agent33Error, Forbidden, Unauthorized
from agent33.security import audit
from agent33.security.api_keys import authenticate_api_key
from agent33.security.ratelimit import limiter_for
from agent33.security.scopes import missing_scopes
from agent33.security.tokens import decode_token, narrow_scopes, user_scopes
from web import ratelimit
from web.extensions import get_settings

API_PREFIX = "/api/v1/"
OPEN_ROUTES = frozenset(
    {
        ("POST", "/api/v1/auth/token"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/openapi.json"),
        ("HEAD", "/api/v1/openapi.json"),
    }
)
SCOPES_ATTR = "_agent33_required_scopes"
USER_CACHE_MAX = 10_000

_users_lock = threading.Lock()
_users: dict[tuple[str | None, str], tuple[float, tuple[str, ...] | None]] = {}

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Principal:
    """Who is calling: `subject` is recorded as `created_by`; `scopes` bound what it may do."""

    subject: str
    scopes: tuple[str, ...]
    kind: Literal["jwt", "api_key"]
    key_id: uuid.UUID | None = field(default=None)
    rate_limit: str | None = field(default=None)  # the key's own limit; None: the settings'
    rate_burst: int | None = field(default=None)


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Declare the scopes a view needs (all of them); the `before_request` hook enforces it.

    At least one scope: an empty list would quietly mean "anyone authenticated", which must be
    spelled `require_authenticated` so reviewers see it.
    """
    if not scopes:
        raise TypeError("require_scopes needs at least one scope; use require_authenticated")
    return _declare(tuple(scopes))


def require_authenticated(view: F) -> F:
    """Declare a view open to any authenticated caller, whatever its scopes."""
    return _declare(())(view)


def _declare(scopes: tuple[str, ...]) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        setattr(view, SCOPES_ATTR, scopes)
        return view

    return decorator


def current_principal() -> Principal:
    principal = flask.g.get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("authentication required")
    return principal


def audit_action(
    session: Session,
    action: str,
    *,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Audit a change the current principal made (outcome `ok`, with the client's IP) in the
    caller's transaction, so the change and its audit row commit together."""
    audit.record(
        session=session,
        action=action,
        outcome="ok",
        principal=current_principal().subject,
        ip=ratelimit.client_ip(),
        target=target,
        details=details,
    )


def _current_scopes(subject: str) -> tuple[str, ...] | None:
    """The token subject's scopes now (None: deleted or disabled), cached a few seconds."""
    settings = get_settings()
    key = (settings.database_url, subject)
    now = time.monotonic()
    ttl = settings.token_recheck_seconds
    with _users_lock:
        cached = _users.get(key)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    with session_scope() as session:
        scopes = user_scopes(session=session, subject=subject)
    found = tuple(scopes) if scopes is not None else None
    if ttl > 0:
        with _users_lock:
            if len(_users) >= USER_CACHE_MAX:
                _users.clear()
            _users[key] = (now, found)
    return found


def _authenticate(request: flask.Request) -> Principal:
    authorization = request.headers.get("Authorization", "").strip()
    raw_key = request.headers.get("X-API-Key", "").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        claims = decode_token(get_settings(), token.strip())
        current = _current_scopes(claims["sub"])
        if current is None:
            raise Unauthorized("access token's user no longer exists or is disabled")
        scopes = narrow_scopes(claims["scopes"], current)
        return Principal(subject=claims["sub"], scopes=tuple(scopes), kind="jwt")
    if raw_key:
        with session_scope() as session:
            key = authenticate_api_key(session=session, raw=raw_key)
            return Principal(
                subject=f"api_key:{key.prefix}",
                scopes=tuple(key.scopes),
                kind="api_key",
                key_id=key.id,
                rate_limit=key.rate_limit,
                rate_burst=key.rate_burst,
            )
    raise Unauthorized("authentication required: send 'Authorization: Bearer <token>' or X-API-Key")


def authenticate(request: flask.Request) -> Principal:
    """The caller of a route outside `/api/v1` that chose to require credentials (`/metrics`).
    Raises Unauthorized."""
    return _authenticate(request)


def _declared_scopes(app: flask.Flask, request: flask.Request) -> tuple[str, ...] | None:
    """Scopes the matched view declared for this method, or None when it declared none."""
    view = app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = request.method.lower()
        handler = getattr(view_class, method, None)
        if handler is None and method == "head":
            handler = getattr(view_class, "get", None)
        view = handler
    scopes = getattr(view, SCOPES_ATTR, None)
    return tuple(scopes) if scopes is not None else None


def _bucket(principal: Principal) -> str:
    return f"key:{principal.key_id}" if principal.key_id else f"sub:{principal.subject}"


def _audit_denial(error: Agent33Error, principal: Principal | None, missing: list[str]) -> None:
    request = flask.request
    ip = ratelimit.client_ip()
    audit.record_now_bounded(
        client=limiter_for(get_settings()).client,
        source=f"principal:{principal.subject}" if principal else f"ip:{ip}",
        action="auth.denied",
        outcome="denied",
        principal=principal.subject if principal else None,
        ip=ip,
        target=f"{request.method} {request.path}",
        details={
            "status": error.http_status,
            "reason": error.message,
            "method": request.method,
            "path": request.path,
            "missing_scopes": missing,
        },
    )


def _signed_webhook(request: flask.Request) -> bool:
    """Webhook receivers authenticate by HMAC signature (checked in the view), not API keys;
    a `webhook_handshake` view also answers the platform's GET check of its URL (the view
    compares the platform's verify token)."""
    view = flask.current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if request.method == "GET" and getattr(view_class, "webhook_handshake", False):
        return True
    return request.method == "POST" and bool(getattr(view_class, "webhook_signed", False))


def enforce_auth() -> None:
    """`before_request`: authenticate, rate-limit, then authorise against the declared scopes."""
    request = flask.request
    if not request.path.startswith(API_PREFIX):
        return
    if (request.method, request.path) in OPEN_ROUTES or _signed_webhook(request):
        ratelimit.limit_anonymous()
        return
    principal: Principal | None = None
    missing: list[str] = []
    try:
        ratelimit.refuse_if_failing()  # before any credential is looked at: no guessing oracle
        try:
            principal = _authenticate(request)
        except Unauthorized:
            ratelimit.count_auth_failure()
            raise
        flask.g.principal = principal
        ratelimit.limit_principal(
            _bucket(principal), principal.subject, principal.rate_limit, principal.rate_burst
        )
        if request.endpoint is None or request.method == "OPTIONS":
            return  # no such route/method: let routing answer 404/405 to the authenticated caller
        required = _declared_scopes(flask.current_app, request)
        if required is None:
            raise Forbidden("this endpoint declares no scopes and is denied by default")
        missing = missing_scopes(principal.scopes, required)
        if missing:
            raise Forbidden(
                f"missing scope {', '.join(missing)}",
                fields={"scopes": [f"Requires {scope!r}." for scope in missing]},
            )
    except (Unauthorized, Forbidden) as error:
        _audit_denial(error, principal, missing)
        raise


def init_app(app: flask.Flask) -> None:
    app.before_request(enforce_auth)
    ratelimit.init_app(app)

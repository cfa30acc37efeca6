"""`POST /api/v1/auth/token`: exchange a username and password for a short-lived JWT.

The login also returns an opaque refresh token: `POST /api/v1/auth/refresh` trades it for a new
access token and a new refresh token (the old one is revoked; presenting it again revokes every
refresh token of the user, since only a thief would replay it), and `POST /api/v1/auth/logout`
revokes it. `GET /api/v1/auth/me` tells any authenticated caller who the API thinks it is.
Every login, refresh, replay and logout is audited with the username and IP. A refresh reads
the user's current state (disabled or deleted: refused; scopes: today's, not the login's), and
a failed one spends the client's failed-authentication budget like a bad API key.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.config import Settings
from agent33.db import session_scope
from agent33.errors import Unauthorized
from agent33.security import audit
from agent33.security.api_keys import authenticate_user
from agent33.security.tokens import (
    RefreshTokenReused,
    issue_refresh_token,
    issue_token,
    revoke_refresh_token,
    revoke_user_refresh_tokens,
    rotate_refresh_token,
)
from web import ratelimit
from web.auth import audit_action, current_principal, require_authenticated
from web.extensions import Blueprint, get_settings
from web.ratelimit import client_ip

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Access tokens for users")


class TokenRequestSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=150))
    password = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(min=1, max=1024)
    )


class TokenSchema(ma.Schema):
    access_token = ma.fields.String()
    token_type = ma.fields.String(metadata={"description": "Always `bearer`"})
    expires_in = ma.fields.Integer(metadata={"description": "Lifetime in seconds"})
    refresh_token = ma.fields.String(
        metadata={"description": "Opaque, single use: trade it at `/auth/refresh`"}
    )
    refresh_expires_in = ma.fields.Integer(metadata={"description": "Lifetime in seconds"})
    scopes = ma.fields.List(ma.fields.String())


class RefreshRequestSchema(ma.Schema):
    refresh_token = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(min=1, max=512)
    )


def _tokens(settings: Settings, subject: str, scopes: list[str], refresh: str) -> dict[str, Any]:
    return {
        "access_token": issue_token(settings, subject, scopes),
        "token_type": "bearer",
        "expires_in": settings.jwt_expire_minutes * 60,
        "refresh_token": refresh,
        "refresh_expires_in": settings.jwt_refresh_expire_days * 86400,
        "scopes": scopes,
    }


@blp.route("/token")
class Token(MethodView):
    @blp.doc(security=[])
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Log in

        Returns a bearer token carrying the user's scopes and a refresh token. Send the first
        as `Authorization: Bearer <access_token>`; 401 for a wrong username or password.
        """
        settings = get_settings()
        username = body["username"].strip()
        try:
            with session_scope() as session:
                user = authenticate_user(
                    session=session, username=username, password=body["password"]
                )
                subject, scopes = user.username, list(user.scopes)
                _, refresh = issue_refresh_token(
                    session=session, settings=settings, user_id=user.id
                )
                audit.record(
                    session=session,
                    action="auth.login",
                    outcome="ok",
                    principal=subject,
                    ip=client_ip(),
                    target=f"user:{subject}",
                    details={"scopes": scopes},
                )
        except Unauthorized:
            audit.record_now(
                action="auth.login_failed",
                outcome="failed",
                principal=username,
                ip=client_ip(),
                target=f"user:{username}",
            )
            raise
        return _tokens(settings, subject, scopes, refresh)


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.doc(security=[])
    @blp.arguments(RefreshRequestSchema)
    @blp.response(200, TokenSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Refresh an access token

        Trades a refresh token for a new access token and a new refresh token; the presented
        one stops working. 401 for an unknown, expired or already used refresh token (using
        one twice also revokes every other refresh token of that user).
        """
        settings = get_settings()
        ratelimit.refuse_if_failing()
        try:
            with session_scope() as session:
                user, refresh = rotate_refresh_token(
                    session=session, settings=settings, raw=body["refresh_token"]
                )
                subject, scopes = user.username, list(user.scopes)
                audit.record(
                    session=session,
                    action="auth.refresh",
                    outcome="ok",
                    principal=subject,
                    ip=client_ip(),
                    target=f"user:{subject}",
                )
        except RefreshTokenReused as reused:
            with session_scope() as session:  # its own transaction: the one above rolled back
                revoked = revoke_user_refresh_tokens(session=session, user_id=reused.user_id)
                audit.record(
                    session=session,
                    action="auth.refresh_reuse",
                    outcome="denied",
                    ip=client_ip(),
                    target=f"user_id:{reused.user_id}",
                    details={"revoked": revoked},
                )
            ratelimit.count_auth_failure()  # after the family is revoked, whatever it answers
            raise
        except Unauthorized:
            ratelimit.count_auth_failure()
            raise
        return _tokens(settings, subject, scopes, refresh)


@blp.route("/logout")
class Logout(MethodView):
    @require_authenticated
    @blp.arguments(RefreshRequestSchema)
    @blp.response(204)
    def post(self, body: dict[str, Any]) -> None:
        """Log out

        Revokes the given refresh token (idempotent: an unknown or already revoked one also
        answers 204). The access token itself stays valid until it expires, so keep it short.
        """
        with session_scope() as session:
            row = revoke_refresh_token(session=session, raw=body["refresh_token"])
            audit_action(
                session,
                "auth.logout",
                target=f"user_id:{row.user_id}" if row is not None else None,
                details={"found": row is not None},
            )


class MeSchema(ma.Schema):
    subject = ma.fields.String(metadata={"description": "Username, or `api_key:<prefix>`"})
    kind = ma.fields.String(metadata={"description": "`jwt` or `api_key`"})
    scopes = ma.fields.List(ma.fields.String())
    key_id = ma.fields.UUID(metadata={"description": "Only for API keys"})


@blp.route("/me")
class Me(MethodView):
    @require_authenticated
    @blp.response(200, MeSchema)
    def get(self) -> dict[str, Any]:
        """Who am I

        The caller's identity and scopes as the API sees them; any valid token or key may ask.
        """
        principal = current_principal()
        me: dict[str, Any] = {
            "subject": principal.subject,
            "kind": principal.kind,
            "scopes": list(principal.scopes),
        }
        if principal.key_id is not None:
            me["key_id"] = principal.key_id
        return me

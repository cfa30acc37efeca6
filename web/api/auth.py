"""`POST /api/v1/auth/token`: exchange a username and password for a short-lived JWT.

`GET /api/v1/auth/me` tells any authenticated caller who the API thinks it is. Every login,
successful or not, is audited (`auth.login` / `auth.login_failed`) with the username and IP.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.errors import Unauthorized
from agent33.security import audit
from agent33.security.api_keys import authenticate_user
from agent33.security.tokens import issue_token
from web.auth import current_principal, require_authenticated
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
    scopes = ma.fields.List(ma.fields.String())


@blp.route("/token")
class Token(MethodView):
    @blp.doc(security=[])
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Log in

        Returns a bearer token carrying the user's scopes. Send it as
        `Authorization: Bearer <access_token>`; 401 for a wrong username or password.
        """
        settings = get_settings()
        username = body["username"].strip()
        try:
            with session_scope() as session:
                user = authenticate_user(
                    session=session, username=username, password=body["password"]
                )
                subject, scopes = user.username, list(user.scopes)
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
        return {
            "access_token": issue_token(settings, subject, scopes),
            "token_type": "bearer",
            "expires_in": settings.jwt_expire_minutes * 60,
            "scopes": scopes,
        }


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

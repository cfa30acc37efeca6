"""`POST /api/v1/auth/token`: exchange a username and password for a short-lived JWT."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.security.api_keys import authenticate_user
from agent33.security.tokens import issue_token
from web.extensions import Blueprint, get_settings

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
        with session_scope() as session:
            user = authenticate_user(
                session=session, username=body["username"], password=body["password"]
            )
            subject, scopes = user.username, list(user.scopes)
        return {
            "access_token": issue_token(settings, subject, scopes),
            "token_type": "bearer",
            "expires_in": settings.jwt_expire_minutes * 60,
            "scopes": scopes,
        }

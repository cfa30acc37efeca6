"""`/api/v1/keys`: issue, list and revoke API keys (the raw key is shown once, at creation)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import select

from agent33.db import session_scope
from agent33.db.models import ApiKey, User
from agent33.errors import Forbidden
from agent33.security import audit
from agent33.security import scopes as sc
from agent33.security.api_keys import create_api_key, list_api_keys, revoke_api_key
from web.auth import audit_action, current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, page, page_schema
from web.ratelimit import client_ip

blp = Blueprint("keys", __name__, url_prefix="/api/v1/keys", description="API keys")


class KeyCreateSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=150))
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(sorted(sc.ALL_SCOPES))),
        required=True,
        validate=ma.validate.Length(min=1),
    )
    expires_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)
    rate_limit = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Regexp(r"^(0|[1-9][0-9]{0,8}/(second|minute|hour))$"),
        metadata={"description": "This key's own limit (`N/second|minute|hour`, `0`: none)"},
    )
    rate_burst = ma.fields.Integer(
        load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=1_000_000)
    )


class KeySchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    prefix = ma.fields.String(metadata={"description": "Public part of the key, for lookup"})
    scopes = ma.fields.List(ma.fields.String())
    user_id = ma.fields.UUID(allow_none=True)
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)
    expires_at = ma.fields.DateTime(allow_none=True)
    revoked_at = ma.fields.DateTime(allow_none=True)
    rate_limit = ma.fields.String(allow_none=True)
    rate_burst = ma.fields.Integer(allow_none=True)


class KeyCreatedSchema(KeySchema):
    key = ma.fields.String(metadata={"description": "The raw key; shown only in this response"})


KeyPageSchema = page_schema(KeySchema, "Key")


def _audit_denied(action: str, target: str | None, details: dict[str, Any]) -> None:
    """A refused key change is audited on its own (the refused transaction never commits)."""
    audit.record_now(
        action=action,
        outcome="denied",
        principal=current_principal().subject,
        ip=client_ip(),
        target=target,
        details=details,
    )


@blp.route("")
class Keys(MethodView):
    @require_scopes(sc.KEYS_ADMIN)
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeyCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an API key

        The response holds the raw `key` once; only its hash is stored. A caller cannot grant
        scopes it does not hold itself (403).
        """
        principal = current_principal()
        beyond = sc.missing_scopes(principal.scopes, body["scopes"])
        if beyond:
            _audit_denied(
                "keys.create",
                None,
                {"name": body["name"], "scopes": body["scopes"], "beyond": beyond},
            )
            raise Forbidden(
                f"cannot grant scopes you do not hold: {', '.join(beyond)}",
                fields={"scopes": [f"Not held by the caller: {scope!r}." for scope in beyond]},
            )
        with session_scope() as session:
            user_id = (
                session.scalar(select(User.id).where(User.username == principal.subject))
                if principal.kind == "jwt"  # a logged-in user's keys die with the account
                else None
            )
            key, raw = create_api_key(
                session=session,
                name=body["name"],
                scopes=body["scopes"],
                user_id=user_id,
                expires_at=body["expires_at"],
                rate_limit=body["rate_limit"],
                rate_burst=body["rate_burst"],
            )
            audit_action(
                session,
                "keys.create",
                target=f"api_key:{key.id}",
                details={"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes)},
            )
        return {**{name: getattr(key, name) for name in KeySchema().fields}, "key": raw}

    @require_scopes(sc.KEYS_ADMIN)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, KeyPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List API keys

        Metadata only (prefix, scopes, usage and revocation times); never the key or its hash.
        """
        with session_scope() as session:
            keys, total = list_api_keys(
                session=session, limit=query["limit"], offset=query["offset"]
            )
        return page(keys, total, query)


@blp.route("/<uuid:key_id>")
class KeyById(MethodView):
    @require_scopes(sc.KEYS_ADMIN)
    @blp.response(204)
    def delete(self, key_id: uuid.UUID) -> None:
        """Revoke an API key

        Takes effect on the next request made with the key; revoking twice is harmless. 403 for
        a key holding scopes the caller does not hold; 409 for the last active `admin` key.
        """
        principal = current_principal()
        with session_scope() as session:
            target = session.get(ApiKey, key_id)
            beyond = sc.missing_scopes(principal.scopes, target.scopes) if target else []
            if beyond:
                _audit_denied("keys.revoke", f"api_key:{key_id}", {"beyond": beyond})
                raise Forbidden(
                    f"cannot revoke a key holding scopes you do not hold: {', '.join(beyond)}",
                    fields={"key_id": [f"Holds {scope!r}." for scope in beyond]},
                )
            key = revoke_api_key(session=session, key_id=key_id)
            audit_action(
                session,
                "keys.revoke",
                target=f"api_key:{key_id}",
                details={"name": key.name, "prefix": key.prefix},
            )

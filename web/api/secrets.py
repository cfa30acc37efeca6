"""`/api/v1/secrets`: write, list and delete vault secrets; no endpoint ever returns a value.

Values go in (PUT) and are encrypted before they touch the database; what comes out is names and
timestamps, so a leaked read-scoped key cannot leak a secret.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.db import session_scope
from agent33.security import scopes as sc
from agent33.security.vault import delete_secret, list_secrets, set_secret, vault_for
from web.auth import audit_action, require_scopes
from web.extensions import Blueprint, get_settings, list_schema

blp = Blueprint("secrets", __name__, url_prefix="/api/v1/secrets", description="Vault secrets")

MAX_VALUE = 65536


class SecretValueSchema(ma.Schema):
    value = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=MAX_VALUE),
        metadata={"description": "The plaintext; stored encrypted and never returned"},
    )


class SecretSchema(ma.Schema):
    name = ma.fields.String()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    rotated_at = ma.fields.DateTime(allow_none=True)


SecretListSchema = list_schema(SecretSchema, "Secret")


@blp.route("")
class Secrets(MethodView):
    @require_scopes(sc.SECRETS_READ)
    @blp.response(200, SecretListSchema)
    def get(self) -> dict[str, Any]:
        """List secrets

        Names and timestamps only; values are never returned by any endpoint.
        """
        with session_scope() as session:
            rows = list_secrets(session=session)
            items = [
                {field: getattr(row, field) for field in SecretSchema().fields} for row in rows
            ]
        return {"items": items, "total": len(items)}


@blp.route("/<name>")
class SecretByName(MethodView):
    @require_scopes(sc.SECRETS_WRITE)
    @blp.arguments(SecretValueSchema)
    @blp.response(204)
    def put(self, body: dict[str, Any], name: str) -> None:
        """Create or replace a secret

        Workflows read it as `{{ secrets.NAME }}`; the value is encrypted with the vault key.
        """
        vault = vault_for(get_settings())
        with session_scope() as session:
            set_secret(session=session, vault=vault, name=name, value=body["value"])
            audit_action(session, "secrets.write", target=name)

    @require_scopes(sc.SECRETS_WRITE)
    @blp.response(204)
    def delete(self, name: str) -> None:
        """Delete a secret

        404 when it does not exist; steps that reference it then fail naming it.
        """
        with session_scope() as session:
            delete_secret(session=session, name=name)
            audit_action(session, "secrets.delete", target=name)

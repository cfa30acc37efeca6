"""`/api/v1/agents`: store, validate and browse agent definitions (versioned like workflows)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import delete

from agent33.db import session_scope
from agent33.db.models import AgentDefinition
from agent33.definitions.agents import list_agents, parse_agent, save_agent
from agent33.definitions.versions import find_version, require_newer
from agent33.errors import NotFound, ValidationFailed
from agent33.security import scopes as sc
from agent33.tools import known_tools
from web.auth import require_scopes
from web.extensions import BIGINT_MAX, Blueprint, get_settings, list_schema

blp = Blueprint("agents", __name__, url_prefix="/api/v1/agents", description="Agent definitions")


class AgentSummarySchema(ma.Schema):
    name = ma.fields.String()
    version = ma.fields.Integer()
    description = ma.fields.String()
    source = ma.fields.String()
    created_at = ma.fields.DateTime()


class AgentSchema(AgentSummarySchema):
    spec = ma.fields.Dict(metadata={"description": "The validated agent document"})


AgentListSchema = list_schema(AgentSummarySchema, "Agent")


class AgentDocumentSchema(ma.Schema):
    """Passed through: the agent loader checks it and names the field."""

    class Meta:
        unknown = ma.INCLUDE

    name = ma.fields.Raw(allow_none=True, metadata={"type": "string"})
    model = ma.fields.Raw(allow_none=True, metadata={"type": "string"})
    system_prompt = ma.fields.Raw(allow_none=True, metadata={"type": "string"})
    tools = ma.fields.Raw(allow_none=True, metadata={"type": "array", "items": {"type": "string"}})


class AgentQuerySchema(ma.Schema):
    version = ma.fields.Integer(validate=ma.validate.Range(min=1, max=BIGINT_MAX))


@blp.route("")
class Agents(MethodView):
    @require_scopes(sc.AGENTS_READ)
    @blp.response(200, AgentListSchema)
    def get(self) -> dict[str, Any]:
        """List agents

        The latest version of each stored agent.
        """
        with session_scope() as session:
            rows = list_agents(session=session)
        return {"items": rows, "total": len(rows)}

    @require_scopes(sc.AGENTS_WRITE)
    @blp.arguments(AgentDocumentSchema)
    @blp.response(201, AgentSchema)
    @blp.alt_response(200, schema=AgentSchema, description="That exact body was already stored")
    def post(self, document: dict[str, Any]) -> tuple[AgentDefinition, int]:
        """Store an agent

        Checks the document (schema, known tools, queue, JSON Schemas): 400 naming the field;
        201 stored; 200 when this exact body is stored; 409 for a changed body, same version.
        """
        agent = parse_agent(
            document, origin=f"agent {document.get('name')!r}", tools=known_tools(get_settings())
        )
        with session_scope() as session:
            row, created = save_agent(session=session, agent=agent, document=document)
        return row, 201 if created else 200


@blp.route("/<string:name>")
class AgentByName(MethodView):
    @require_scopes(sc.AGENTS_READ)
    @blp.arguments(AgentQuerySchema, location="query")
    @blp.response(200, AgentSchema)
    def get(self, query: dict[str, Any], name: str) -> AgentDefinition:
        """Get an agent

        The latest version, or the one named by `?version=`; 404 when absent.
        """
        with session_scope() as session:
            return find_version(
                session=session,
                model=AgentDefinition,
                kind="agent",
                name=name,
                version=query.get("version"),
            )

    @require_scopes(sc.AGENTS_WRITE)
    @blp.arguments(AgentDocumentSchema)
    @blp.response(201, AgentSchema)
    def put(self, document: dict[str, Any], name: str) -> AgentDefinition:
        """Store a new version

        The body's `name` must be the URL's (400) and its `version` greater than every stored
        one (409), so a version a run used never changes.
        """
        if document.get("name") != name:
            raise ValidationFailed(
                f"`name` must be {name!r} (the URL's)", fields={"name": ["must equal the URL's"]}
            )
        agent = parse_agent(document, origin=f"agent {name!r}", tools=known_tools(get_settings()))
        with session_scope() as session:
            require_newer(
                session=session,
                model=AgentDefinition,
                kind="agent",
                name=name,
                version=agent.version,
            )
            row, _ = save_agent(session=session, agent=agent, document=document)
            return row

    @require_scopes(sc.AGENTS_WRITE)
    @blp.arguments(AgentQuerySchema, location="query")
    @blp.response(204)
    def delete(self, query: dict[str, Any], name: str) -> None:
        """Delete an agent

        Every version, or only `?version=N`; 404 when nothing matches.
        """
        with session_scope() as session:
            statement = delete(AgentDefinition).where(AgentDefinition.name == name)
            if query.get("version"):
                statement = statement.where(AgentDefinition.version == query["version"])
            if session.execute(statement).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"agent {name!r} not found", fields={"agent": ["not found"]})

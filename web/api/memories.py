"""`/api/v1/memory/memories`: the caller's own long-term memories of an agent.

The user is always the authenticated principal's subject (the identity the chat API recalls
memories for), never a parameter: a caller lists, adds and deletes only their own memories, and
another user's memory id is a 404 like an unknown one. An agent's memories live in its
`memory.long_term.collection`.
"""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.db.models.memory import MemoryDocument
from agent33.definitions.agents import get_agent
from agent33.definitions.schemas import NAME
from agent33.memory import memories
from agent33.security import scopes as sc
from web.api.memory_schemas import not_blank
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, get_settings, page, page_schema

PREFIX = "/api/v1/memory/memories"

blp = Blueprint(
    "memories", __name__, url_prefix=PREFIX, description="Long-term memories of the caller"
)


def _agent_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        required=True, validate=NAME, metadata={"description": "the agent's name"}, **kwargs
    )


class MemoryQuerySchema(PageQuerySchema):
    agent = _agent_field()


class MemoryCreateSchema(ma.Schema):
    agent = _agent_field()
    text = ma.fields.String(
        required=True, validate=[ma.validate.Length(1, memories.MAX_SPOKEN), not_blank]
    )
    kind = ma.fields.String(load_default="fact", validate=ma.validate.OneOf(memories.KINDS))


class MemoryItemSchema(ma.Schema):
    id = ma.fields.UUID()
    agent = ma.fields.String()
    kind = ma.fields.String()
    text = ma.fields.String()
    collection = ma.fields.String()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


MemoryPageSchema = page_schema(MemoryItemSchema, "Memory")


def _owner() -> str:
    return current_principal().subject


def _collection_of(session: Session, agent: str) -> str:
    """The agent's long-term collection (404 naming `agent` when there is no such agent)."""
    return get_agent(session=session, name=agent).memory.long_term.collection


def _view(document: MemoryDocument, collection: str) -> dict[str, Any]:
    return {
        "id": document.id,
        "agent": document.metadata_.get("agent", ""),
        "kind": document.metadata_.get("kind", ""),
        "text": document.title,  # a memory's title is its whole text
        "collection": collection,
        "created_at": document.created_at,
        "updated_at": document.updated_at,
    }


@blp.route("")
class Memories(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.arguments(MemoryQuerySchema, location="query")
    @blp.response(200, MemoryPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List my memories of an agent

        What `agent` remembers about the caller (newest first, paged with `limit` and
        `offset`); never another user's. 404 naming `agent` when there is no such agent.
        """
        agent, limit, offset = query["agent"], query["limit"], query["offset"]
        with session_scope() as session:
            name = _collection_of(session, agent)
            total, documents = memories.list_memories(
                session, agent=agent, user=_owner(), collection=name, limit=limit, offset=offset
            )
            items = [_view(document, name) for document in documents]
        return page(items, total, query)

    @require_scopes(sc.MEMORY_WRITE)
    @blp.arguments(MemoryCreateSchema)
    @blp.response(201, MemoryItemSchema)
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Remember something for me

        Stores `text` as what `agent` remembers about the caller (`kind`: `fact` or
        `summary`), as the `remember` tool does; the same text again updates the same memory.
        404 naming `agent` when there is no such agent.
        """
        with session_scope() as session:
            name = _collection_of(session, body["agent"])
            document_id = memories.remember(
                session,
                get_settings(),
                agent=body["agent"],
                user=_owner(),
                text=body["text"],
                kind=body["kind"],
                collection=name,
            )
            document = session.get(MemoryDocument, document_id)
            assert document is not None
            view = _view(document, name)
        return view, 201, {"Location": f"{PREFIX}?agent={body['agent']}"}


@blp.route("/<uuid:document_id>")
class MemoryById(MethodView):
    @require_scopes(sc.MEMORY_WRITE)
    @blp.response(204)
    def delete(self, document_id: uuid.UUID) -> None:
        """Forget one of my memories

        Deletes the memory and its chunks; 404 when it is not one of the caller's memories.
        """
        with session_scope() as session:
            memories.forget(session, document_id, user=_owner())

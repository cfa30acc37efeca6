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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.db.models.memory import MemoryChunk, MemoryCollection, MemoryDocument
from agent33.definitions.agents import get_agent
from agent33.definitions.schemas import NAME
from agent33.errors import NotFound
from agent33.memory import memories
from agent33.security import scopes as sc
from web.api.memory_schemas import check_storable
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, get_settings

PREFIX = "/api/v1/memory/memories"
MAX_TEXT = 2000
MAX_LIMIT = 200

blp = Blueprint(
    "memories", __name__, url_prefix=PREFIX, description="Long-term memories of the caller"
)


def _not_blank(value: str) -> None:
    check_storable(value)
    if not value.strip():
        raise ma.ValidationError("must not be blank")


def _agent_field(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        required=True, validate=NAME, metadata={"description": "the agent's name"}, **kwargs
    )


class MemoryQuerySchema(ma.Schema):
    agent = _agent_field()
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, MAX_LIMIT))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(0, 2**31 - 1))


class MemoryCreateSchema(ma.Schema):
    agent = _agent_field()
    text = ma.fields.String(required=True, validate=[ma.validate.Length(1, MAX_TEXT), _not_blank])
    kind = ma.fields.String(load_default="fact", validate=ma.validate.OneOf(memories.KINDS))


class MemoryItemSchema(ma.Schema):
    id = ma.fields.UUID()
    agent = ma.fields.String()
    kind = ma.fields.String()
    text = ma.fields.String(metadata={"description": "reassembled from the memory's chunks"})
    collection = ma.fields.String()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class MemoryPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(MemoryItemSchema))
    total = ma.fields.Integer()
    limit = ma.fields.Integer()
    offset = ma.fields.Integer()


def _owner() -> str:
    return current_principal().subject


def _collection_of(session: Session, agent: str) -> str:
    """The agent's long-term collection (404 naming `agent` when there is no such agent)."""
    return get_agent(session=session, name=agent).memory.long_term.collection


def _owned_by(agent: str, user: str) -> Any:
    return MemoryDocument.metadata_.contains({"agent": agent, "user": user})


def _joined(pieces: list[str]) -> str:
    """The text again from its chunks: each chunk is a slice of it, overlapping the previous."""
    text = ""
    for piece in pieces:
        overlap = next(
            (n for n in range(min(len(text), len(piece)), 0, -1) if text.endswith(piece[:n])), 0
        )
        text = text + piece[overlap:] if overlap or not text else f"{text} {piece}"
    return text


def _views(
    session: Session, documents: list[MemoryDocument], collection: str
) -> list[dict[str, Any]]:
    chunks: dict[uuid.UUID, list[str]] = {d.id: [] for d in documents}
    if documents:
        rows = session.execute(
            select(MemoryChunk.document_id, MemoryChunk.content)
            .where(MemoryChunk.document_id.in_(list(chunks)))
            .order_by(MemoryChunk.document_id, MemoryChunk.ordinal)
        )
        for document_id, content in rows:
            chunks[document_id].append(content)
    return [
        {
            "id": d.id,
            "agent": d.metadata_.get("agent", ""),
            "kind": d.metadata_.get("kind", ""),
            "text": _joined(chunks[d.id]),
            "collection": collection,
            "created_at": d.created_at,
            "updated_at": d.updated_at,
        }
        for d in documents
    ]


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
            collection = session.scalar(
                select(MemoryCollection).where(MemoryCollection.name == name)
            )
            if collection is None:  # created by the first memory
                return {"items": [], "total": 0, "limit": limit, "offset": offset}
            where = (MemoryDocument.collection_id == collection.id, _owned_by(agent, _owner()))
            total = session.scalar(select(func.count()).select_from(MemoryDocument).where(*where))
            documents = list(
                session.scalars(
                    select(MemoryDocument)
                    .where(*where)
                    .order_by(MemoryDocument.created_at.desc(), MemoryDocument.id)
                    .limit(limit)
                    .offset(offset)
                )
            )
            items = _views(session, documents, name)
        return {"items": items, "total": int(total or 0), "limit": limit, "offset": offset}

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
            [view] = _views(session, [document], name)
        return view, 201, {"Location": f"{PREFIX}?agent={body['agent']}"}


@blp.route("/<uuid:document_id>")
class MemoryById(MethodView):
    @require_scopes(sc.MEMORY_WRITE)
    @blp.response(204)
    def delete(self, document_id: uuid.UUID) -> None:
        """Forget one of my memories

        Deletes the memory and its chunks; 404 when it is not one of the caller's memories.
        """
        owner = _owner()
        with session_scope() as session:
            document = session.get(MemoryDocument, document_id)
            if (
                document is None
                or not document.key.startswith("memory/")
                or document.metadata_.get("user") != owner
            ):
                raise NotFound(
                    f"memory {document_id} not found", fields={"document_id": ["not found"]}
                )
            session.delete(document)
            session.flush()

"""Long-term memories: facts and summaries an agent keeps about a user, in the vector store.

A memory is a document in a collection (`agent-memory` unless the agent names another, created
on first use) with metadata `{agent, user, kind}`. Recall always filters on agent *and* user,
in the SQL of the search itself, so one user's memories can never reach another user's prompt.

Memories are ingested without cross-document deduplication on purpose: two users may tell an
agent the same sentence, and each must own a copy carrying their own metadata. The document key
is derived from (agent, user, text), so remembering the same fact twice updates one document.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models.memory import MemoryDocument
from agent33.errors import NotFound, ValidationFailed
from agent33.memory import service, store
from agent33.memory.chunking import content_hash
from agent33.memory.ingest import DocumentInput, ingest_documents, unstorable

DEFAULT_COLLECTION = "agent-memory"
KINDS = ("fact", "summary")
MAX_TEXT = 20_000
MAX_SPOKEN = 2000  # what the `remember` tool and the API accept in one memory
KEY_PREFIX = "memory/"


def memory_key(agent: str, user: str, text: str) -> str:
    """A stable key per (agent, user, text): the hash keeps user names out of the key's shape."""
    owner = hashlib.sha256(f"{agent}\0{user}".encode()).hexdigest()[:16]
    return f"{KEY_PREFIX}{agent}/{owner}/{content_hash(text)[:32]}"


def _check(agent: str, user: str, text: str, kind: str) -> None:
    problems: dict[str, list[str]] = {}
    if not agent.strip():
        problems["agent"] = ["empty"]
    if not user.strip():
        problems["user"] = ["empty"]
    if not text.strip():
        problems["text"] = ["empty"]
    elif problem := unstorable(text):
        problems["text"] = [problem]
    elif len(text) > MAX_TEXT:
        problems["text"] = [f"longer than {MAX_TEXT} characters"]
    if kind not in KINDS:
        problems["kind"] = [f"one of {', '.join(KINDS)}"]
    if problems:
        field, messages = next(iter(problems.items()))
        raise ValidationFailed(f"memory {field}: {messages[0]}", fields=problems)


def remember(
    session: Session,
    settings: Settings,
    *,
    agent: str,
    user: str,
    text: str,
    kind: str = "fact",
    collection: str = DEFAULT_COLLECTION,
) -> uuid.UUID:
    """Store a memory in the caller's transaction; returns its document id. The whole text is
    also the document's title, so a memory is listed without reassembling its chunks.

    Raises:
        ValidationFailed: empty agent, user or text, an unknown kind, or unstorable text.
    """
    _check(agent, user, text, kind)
    target = service.ensure_collection(session, settings, collection)
    memory = DocumentInput(
        key=memory_key(agent, user, text),
        text=text,
        title=text,
        source=f"agent:{agent}",
        metadata={"agent": agent, "user": user, "kind": kind},
    )
    (result,) = ingest_documents(
        session,
        target,
        [memory],
        service.collection_embedder(settings, target),
        deduplicate=False,
    )
    return result.document_id


def _owned_by(agent: str, user: str) -> Any:
    return MemoryDocument.metadata_.contains({"agent": agent, "user": user})


def list_memories(
    session: Session, *, agent: str, user: str, collection: str, limit: int, offset: int
) -> tuple[int, list[MemoryDocument]]:
    """(total, a page newest first) of this agent's memories of this user."""
    target = store.get_collection_or_none(session, collection)
    if target is None:  # created by the first memory
        return 0, []
    where = (MemoryDocument.collection_id == target.id, _owned_by(agent, user))
    total = session.scalar(select(func.count()).select_from(MemoryDocument).where(*where))
    page = session.scalars(
        select(MemoryDocument)
        .where(*where)
        .order_by(MemoryDocument.created_at.desc(), MemoryDocument.id)
        .limit(limit)
        .offset(offset)
    )
    return int(total or 0), list(page)


def forget(session: Session, document_id: uuid.UUID, *, user: str) -> None:
    """Delete one of `user`'s memories (and its chunks).

    Raises:
        NotFound: no such memory, or it belongs to someone else (the two are not told apart).
    """
    document = session.get(MemoryDocument, document_id)
    if (
        document is None
        or not document.key.startswith(KEY_PREFIX)
        or document.metadata_.get("user") != user
    ):
        raise NotFound(f"memory {document_id} not found", fields={"document_id": ["not found"]})
    store.delete_document(session, document)


def recall(
    session: Session,
    settings: Settings,
    *,
    agent: str,
    user: str,
    query: str,
    top_k: int = 3,
    kind: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    min_score: float | None = None,
) -> list[store.Hit]:
    """This agent's memories of this user closest to `query` (none before the first memory)."""
    if not agent.strip() or not user.strip() or not query.strip():
        return []
    filters: dict[str, str] = {"agent": agent, "user": user}
    if kind is not None:
        filters["kind"] = kind
    try:
        return service.search(
            session,
            settings,
            collection,
            query,
            top_k=top_k,
            filters=filters,
            min_score=min_score,
        )
    except NotFound:  # the collection is created by the first memory
        return []

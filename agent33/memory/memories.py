"""Long-term memories: facts and summaries an agent keeps about a user, in the vector store.

A memory is a document in a collection (`agent-memory` unless the agent names another, created
on first use) with metadata `{agent, user, kind}`. Recall always filters on agent *and* user,
in the SQL of the search itself, so one user's memories can never reach another user's prompt.

Memories bypass ingestion's cross-document deduplication on purpose: two users may tell an
agent the same sentence, and each must own a copy carrying their own metadata. The document key
is derived from (agent, user, text), so remembering the same fact twice updates one document.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.errors import ValidationFailed
from agent33.memory import service, store
from agent33.memory.chunking import chunk_text, content_hash

DEFAULT_COLLECTION = "agent-memory"
KINDS = ("fact", "summary")
MAX_TEXT = 20_000


def memory_key(agent: str, user: str, text: str) -> str:
    """A stable key per (agent, user, text): the hash keeps user names out of the key's shape."""
    owner = hashlib.sha256(f"{agent}\0{user}".encode()).hexdigest()[:16]
    return f"memory/{agent}/{owner}/{content_hash(text)[:32]}"


def _check(agent: str, user: str, text: str, kind: str) -> None:
    problems: dict[str, list[str]] = {}
    if not agent.strip():
        problems["agent"] = ["empty"]
    if not user.strip():
        problems["user"] = ["empty"]
    if not text.strip():
        problems["text"] = ["empty"]
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
    """Store a memory in the caller's transaction; returns its document id.

    Raises:
        ValidationFailed: empty agent, user or text, or an unknown kind.
    """
    _check(agent, user, text, kind)
    target = service.ensure_collection(session, settings, collection)
    pieces = chunk_text(
        text, max_tokens=target.chunk_tokens, overlap=target.chunk_overlap, markdown=False
    )
    vectors = service.collection_embedder(settings, target).embed([p.text for p in pieces])
    chunks = [
        store.NewChunk(
            content=piece.text,
            content_hash=content_hash(piece.text),
            token_count=piece.token_count,
            embedding=vector,
        )
        for piece, vector in zip(pieces, vectors, strict=True)
    ]
    document = store.replace_document(
        session,
        target,
        key=memory_key(agent, user, text),
        content_hash=content_hash(text),
        chunks=chunks,
        title=kind,
        source=f"agent:{agent}",
        metadata={"agent": agent, "user": user, "kind": kind},
    )
    return document.id


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
    if store.get_collection_or_none(session, collection) is None:
        return []
    filters: dict[str, str] = {"agent": agent, "user": user}
    if kind is not None:
        filters["kind"] = kind
    return service.search(
        session,
        settings,
        collection,
        query,
        top_k=top_k,
        filters=filters,
        min_score=min_score,
    )

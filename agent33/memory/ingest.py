"""Ingestion: text -> chunks -> embeddings -> one atomic replace of the document's chunks.

Deduplication works at two levels, both by content hash:
- a document whose key and text are unchanged is skipped (`unchanged`); a new key whose text is
  already in the collection is not stored twice (`duplicate`, pointing at the first copy);
- when a changed document is re-ingested, chunks whose text is already in the collection reuse
  the stored embedding, so only new text is embedded.
A batch of documents is written in the caller's transaction as a pipeline: its documents are
taken in groups of about `GROUP_CHUNKS` new chunks, and one thread embeds group k+1 while the
database writes group k (onnxruntime and the database driver both release the GIL), so the
embedding model is rarely idle while chunks are stored. A batch of one group runs inline.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from agent33.db.models.memory import MemoryCollection
from agent33.errors import ValidationFailed
from agent33.memory import store
from agent33.memory.chunking import Chunk, chunk_text, content_hash
from agent33.memory.embeddings import Embedder, Vectors

# New chunks per pipeline group. Smaller groups overlap more but embed worse (a short pool of
# mixed lengths pads more): on 2 cores with a local database, groups of 64 or 96 chunks made a
# 16-document batch (~180 chunks) slower than one group, so such a batch is one group.
GROUP_CHUNKS = 256


@dataclass(frozen=True)
class DocumentInput:
    """One document to ingest; `key` is its identity in the collection (path, URL or an id)."""

    key: str
    text: str
    title: str = ""
    source: str = ""
    media_type: str = "text/plain"
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    key: str
    document_id: uuid.UUID
    status: str  # created | updated | unchanged | duplicate
    chunks: int
    embedded: int  # chunks that needed a new embedding

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "document_id": str(self.document_id),
            "status": self.status,
            "chunks": self.chunks,
            "embedded": self.embedded,
        }


def check_embedder(collection: MemoryCollection, embedder: Embedder) -> None:
    if embedder.dimension != collection.dimension:
        raise ValidationFailed(
            f"collection {collection.name} stores {collection.dimension}-dimensional vectors, "
            f"but {embedder.name} makes {embedder.dimension}-dimensional ones"
        )


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` as text (None when it can): it holds no NUL, and
    UTF-8 cannot encode an unpaired surrogate. The API's schemas and the tools ask this too."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no unpaired surrogates)"
    return None


def _check_documents(documents: Sequence[DocumentInput]) -> None:
    """Refuse what the database would refuse, naming the document and field (a job records
    it against that document instead of failing the whole batch with a database error)."""
    for index, document in enumerate(documents):
        if not document.key.strip():
            raise ValidationFailed("a document needs a key", fields={f"{index}.key": ["empty"]})
        for name in ("key", "text", "title", "source"):
            problem = unstorable(getattr(document, name))
            if problem:
                raise ValidationFailed(
                    f"document {document.key!r}: {name} {problem}",
                    fields={f"{index}.{name}": [problem]},
                )


def _document_hash(document: DocumentInput) -> str:
    return content_hash(document.text)


@dataclass(frozen=True)
class _Write:
    """A document to (re)write: its input position, text hash, chunks, and whether it exists."""

    index: int
    document: DocumentInput
    digest: str
    pieces: list[Chunk]
    existed: bool


@dataclass
class _Plan:
    """What a batch needs: finished results, documents to (re)write, first index per text."""

    results: dict[int, IngestResult] = field(default_factory=dict)
    writes: list[_Write] = field(default_factory=list)
    first_of_hash: dict[str, int] = field(default_factory=dict)


def ingest_documents(
    session: Session,
    collection: MemoryCollection,
    documents: Sequence[DocumentInput],
    embedder: Embedder,
    *,
    deduplicate: bool = True,
) -> list[IngestResult]:
    """Ingest a batch in the caller's transaction; results in input order.

    `deduplicate=False` stores a text again under a new key even when another document already
    has it (memories: each user owns a copy carrying their own metadata)."""
    check_embedder(collection, embedder)
    _check_documents(documents)
    plan = _plan(session, collection, documents, deduplicate=deduplicate)
    _write_groups(session, collection, plan, _known(session, collection, plan), embedder)
    for index, document in enumerate(documents):
        if index not in plan.results:  # a second copy of a text first seen in this batch
            first = plan.results[plan.first_of_hash[_document_hash(document)]]
            plan.results[index] = IngestResult(document.key, first.document_id, "duplicate", 0, 0)
    return [plan.results[index] for index in range(len(documents))]


def _plan(
    session: Session,
    collection: MemoryCollection,
    documents: Sequence[DocumentInput],
    *,
    deduplicate: bool,
) -> _Plan:
    plan = _Plan()
    digests = [_document_hash(document) for document in documents]
    stored = store.documents_by_key(session, collection, [d.key for d in documents])
    twins = (
        store.documents_by_hash(session, collection, digests)
        if deduplicate and len(stored) < len(documents)
        else {}
    )
    for index, document in enumerate(documents):
        digest = digests[index]
        existing = stored.get(document.key)
        if existing is not None and (
            existing.content_hash,
            existing.title,
            existing.metadata_,
        ) == (digest, document.title, dict(document.metadata)):
            plan.results[index] = IngestResult(
                document.key, existing.id, "unchanged", existing.chunk_count, 0
            )
            continue
        if existing is None and deduplicate:
            twin = twins.get(digest)
            if twin is not None:
                plan.results[index] = IngestResult(document.key, twin.id, "duplicate", 0, 0)
                continue
            if digest in plan.first_of_hash:
                continue  # resolved once the first copy has an id
        plan.first_of_hash.setdefault(digest, index)
        pieces = chunk_text(
            document.text,
            max_tokens=collection.chunk_tokens,
            overlap=collection.chunk_overlap,
            markdown=document.media_type in ("text/markdown", "text/html"),
        )
        plan.writes.append(_Write(index, document, digest, pieces, existing is not None))
    return plan


def _known(session: Session, collection: MemoryCollection, plan: _Plan) -> dict[str, Any]:
    """Vectors already stored in the collection for the batch's chunk texts, by hash."""
    hashes = {content_hash(piece.text) for write in plan.writes for piece in write.pieces}
    return store.known_embeddings(session, collection, list(hashes))


def _groups(plan: _Plan, known: Mapping[str, Any]) -> list[tuple[list[_Write], dict[str, str]]]:
    """The writes in order, cut into groups of about GROUP_CHUNKS chunks to embed; each group
    carries the texts (by hash) that no stored chunk and no earlier group has."""
    groups: list[tuple[list[_Write], dict[str, str]]] = []
    writes: list[_Write] = []
    texts: dict[str, str] = {}
    assigned: set[str] = set(known)
    for write in plan.writes:
        writes.append(write)
        for piece in write.pieces:
            digest = content_hash(piece.text)
            if digest not in assigned:
                assigned.add(digest)
                texts[digest] = piece.text
        if len(texts) >= GROUP_CHUNKS:
            groups.append((writes, texts))
            writes, texts = [], {}
    if writes:
        groups.append((writes, texts))
    return groups


def _embed(embedder: Embedder, texts_by_hash: Mapping[str, str]) -> dict[str, Vectors]:
    if not texts_by_hash:
        return {}
    vectors = embedder.embed(list(texts_by_hash.values()))
    return dict(zip(texts_by_hash, vectors, strict=True))


def _write_groups(
    session: Session,
    collection: MemoryCollection,
    plan: _Plan,
    known: dict[str, Any],
    embedder: Embedder,
) -> None:
    """Embed and write each group in order; while group k is written, a thread embeds group
    k+1. When a write fails, the thread's group is awaited before the error propagates, so
    nothing is left running."""
    groups = _groups(plan, known)
    fresh: set[str] = set()

    def write(group: list[_Write], vectors: dict[str, Vectors]) -> None:
        known.update(vectors)
        fresh.update(vectors)
        for item in group:
            plan.results[item.index] = _write(session, collection, item, known, fresh)

    if len(groups) <= 1:  # one group: nothing to overlap
        for group, texts in groups:
            write(group, _embed(embedder, texts))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent33-embed") as pool:
        pending: Future[dict[str, Vectors]] = pool.submit(_embed, embedder, groups[0][1])
        for n, (group, _) in enumerate(groups):
            vectors = pending.result()
            if n + 1 < len(groups):
                pending = pool.submit(_embed, embedder, groups[n + 1][1])
            write(group, vectors)


def _write(
    session: Session,
    collection: MemoryCollection,
    write: _Write,
    known: dict[str, Any],
    fresh: set[str],
) -> IngestResult:
    document = write.document
    chunks = []
    for piece in write.pieces:
        digest_of_piece = content_hash(piece.text)
        chunks.append(
            store.NewChunk(
                content=piece.text,
                content_hash=digest_of_piece,
                token_count=piece.token_count,
                embedding=known[digest_of_piece],
                metadata={"heading": piece.heading} if piece.heading else {},
            )
        )
    stored = store.replace_document(
        session,
        collection,
        key=document.key,
        content_hash=write.digest,
        chunks=chunks,
        title=document.title,
        source=document.source,
        media_type=document.media_type,
        metadata=document.metadata,
    )
    embedded = sum(1 for chunk in chunks if chunk.content_hash in fresh)
    fresh -= {chunk.content_hash for chunk in chunks}
    status = "updated" if write.existed else "created"
    return IngestResult(document.key, stored.id, status, len(chunks), embedded)
